// The CUDA half of the c10d shim, compiled only when the venv has the CUDA runtime and NCCL
// headers (build.rs): ProcessGroupNCCL (its code is in libtorch_cuda), the communication streams
// FSDP's overlapped collectives run on, and the caching allocator's peak-memory counter. Machines
// without them compile dist_nocuda.cpp instead.

// Only c10's device-generic stream, event and guard classes are used here (they dispatch to
// libc10_cuda through its registered guard implementation): the CUDA-specific header classes
// (CUDAGuard, CUDAEvent) are inline and would make this object need libcudart directly, which
// the worker does not link (libtorch_cuda loads it).
#include <c10/core/DeviceGuard.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <dlfcn.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

c10::intrusive_ptr<c10d::Backend> camel_make_nccl(const c10::intrusive_ptr<c10d::Store> &store,
                                                  int rank, int world, std::chrono::milliseconds timeout) {
  auto o = c10d::ProcessGroupNCCL::Options::create();
  o->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, o);
}

namespace {

c10::Device cuda(int device) { return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device)); }

// Two streams per device, made once: all-gathers on one and reduce-scatters on the other, so a
// prefetching all-gather never queues behind a gradient's reduce-scatter, as torch FSDP2's
// `all_gather_stream` and `reduce_scatter_stream`. High priority, as there: when compute kernels
// fill the GPU, the scheduler starts the (small, latency-bound) communication kernels first.
c10::Stream comm_stream(int device, int which) {
  static std::mutex mu;
  static std::map<std::pair<int, int>, c10::Stream> streams;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_pair(device, which);
  auto it = streams.find(key);
  if (it == streams.end()) {
    it = streams.emplace(key, c10::cuda::getStreamFromPool(true, static_cast<c10::DeviceIndex>(device)).unwrap())
             .first;
  }
  return it->second;
}

c10::Stream compute_stream(int device) {
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).unwrap();
}

}  // namespace

// The collective reads what the compute stream queued before it (the shard cast to bf16, the
// layer's gradients): the communication stream waits for an event recorded on the compute stream
// now, so only the work queued so far orders it — compute queued afterwards (the next layer) runs
// alongside. With the communication stream current, ProcessGroupNCCL runs a synchronous op
// (asyncOp false) on it directly; `wait()` then only orders that stream (a no-op, or a wait on
// NCCL's own stream if a build ignores asyncOp), never the CPU. The returned event marks the
// collective's end on the communication stream; camel_cuda_wait_event makes the compute stream
// wait for it before the gathered weights or reduced gradients are used. The Rust side keeps the
// input and output tensors alive until then, and frees them on the compute stream only after that
// wait, so the caching allocator cannot hand their memory out while NCCL still uses it.
std::shared_ptr<void> camel_cuda_on_comm_stream(int device, int which,
                                                const std::function<c10::intrusive_ptr<c10d::Work>()> &launch) {
  c10::DeviceGuard on_device(cuda(device));
  auto compute = compute_stream(device);
  auto comm = comm_stream(device, which);
  c10::Event ready(c10::DeviceType::CUDA);
  ready.record(compute);
  ready.block(comm);
  auto done = std::make_shared<c10::Event>(c10::DeviceType::CUDA);
  {
    c10::StreamGuard on_comm(comm);
    auto work = launch();
    work->wait();
    done->record(comm);
  }
  return done;
}

void camel_cuda_wait_event(int device, const std::shared_ptr<void> &event) {
  c10::DeviceGuard on_device(cuda(device));
  std::static_pointer_cast<c10::Event>(event)->block(compute_stream(device));
}

extern "C" {

int camel_has_nccl() { return 1; }

// Peak bytes allocated by the caching allocator on `device` since the start (or the last reset).
long long camel_cuda_peak_bytes(int device) {
  try {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  } catch (...) {
    return -1;
  }
}

// Free and total bytes of `device` as the driver sees them (cudaMemGetInfo, looked up in the
// libcudart that libtorch_cuda loaded); -1 on failure.
int camel_cuda_mem_info(int device, long long *free_bytes, long long *total_bytes) {
  try {
    using MemGetInfo = int (*)(size_t *, size_t *);
    auto get = reinterpret_cast<MemGetInfo>(dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
    if (get == nullptr) return -1;
    c10::DeviceGuard on_device(cuda(device));
    size_t f = 0, t = 0;
    if (get(&f, &t) != 0) return -1;
    *free_bytes = static_cast<long long>(f);
    *total_bytes = static_cast<long long>(t);
    return 0;
  } catch (...) {
    return -1;
  }
}

void camel_cuda_reset_peak(int device) {
  try {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device);
  } catch (...) {
  }
}

}  // extern "C"
