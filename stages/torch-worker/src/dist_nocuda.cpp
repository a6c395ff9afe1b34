// Stand-ins for dist_cuda.cpp on machines whose torch has no CUDA/NCCL headers.

#include <torch/csrc/distributed/c10d/Backend.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>

c10::intrusive_ptr<c10d::Backend> camel_make_nccl(const c10::intrusive_ptr<c10d::Store> &, int, int,
                                                  std::chrono::milliseconds) {
  throw std::runtime_error("this worker was built without NCCL (no CUDA/NCCL headers in the venv's torch)");
}

std::shared_ptr<void> camel_cuda_on_comm_stream(int, int,
                                                const std::function<c10::intrusive_ptr<c10d::Work>()> &) {
  throw std::runtime_error("this worker was built without CUDA streams (no CUDA/NCCL headers in the venv's torch)");
}

void camel_cuda_wait_event(int, const std::shared_ptr<void> &) {
  throw std::runtime_error("this worker was built without CUDA streams (no CUDA/NCCL headers in the venv's torch)");
}

extern "C" {
int camel_has_nccl() { return 0; }
long long camel_cuda_peak_bytes(int) { return -1; }
void camel_cuda_reset_peak(int) {}
int camel_cuda_mem_info(int, long long *, long long *) { return -1; }
}
