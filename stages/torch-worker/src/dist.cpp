// c10d for the Rust worker (src/dist.rs): a TCPStore rendezvous, a Gloo or NCCL backend, and the
// five collectives data-parallel training needs, plus started-but-not-waited-for all-gathers and
// reduce-scatters (`camel_pg_*_start`, `camel_work_wait`) that FSDP overlaps with compute. Tensors arrive as tch's raw `at::Tensor*` and are
// used in place (no copies). Every C++ exception is caught here and returned as text: nothing is
// thrown across the C boundary. Each collective waits for its work with the group's timeout, so a
// dead peer turns into an error instead of a hang.

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// dist_cuda.cpp (compiled when the CUDA and NCCL headers are present) or the fallback below.
c10::intrusive_ptr<c10d::Backend> camel_make_nccl(const c10::intrusive_ptr<c10d::Store> &store,
                                                  int rank, int world, std::chrono::milliseconds timeout);
// NCCL: runs `launch` on the device's communication stream `which` (0 all-gathers, 1
// reduce-scatters) after the work already queued on the current (compute) stream, and returns an
// event recorded on that stream after the collective (dist_cuda.cpp).
std::shared_ptr<void> camel_cuda_on_comm_stream(int device, int which,
                                                const std::function<c10::intrusive_ptr<c10d::Work>()> &launch);
// NCCL: makes the current (compute) stream wait for `event`, without blocking the CPU.
void camel_cuda_wait_event(int device, const std::shared_ptr<void> &event);

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  // NCCL: the CUDA device of this rank (for barriers); -1 for Gloo.
  int device;
};

void set_err(char *err, int err_len, const char *msg) {
  if (err_len <= 0) return;
  std::strncpy(err, msg, err_len - 1);
  err[err_len - 1] = 0;
}

bool is_loopback(const std::string &addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

// Waits for `work`; a timeout or a peer's failure becomes an exception caught by the caller.
// NCCL: `wait()` only makes the current CUDA stream wait for the collective (a timeout would
// block the CPU until the kernel ends, serialising every collective); its watchdog enforces the
// group's timeout instead.
void finish(Group *g, const c10::intrusive_ptr<c10d::Work> &work) {
  if (g->device >= 0) {
    work->wait();
    return;
  }
  if (!work->wait(g->timeout)) {
    throw std::runtime_error("timed out after " + std::to_string(g->timeout.count() / 1000) + " s");
  }
}

// A collective that was started and not yet waited for. Gloo: its work (Gloo's own threads run
// it while the caller computes). NCCL: the event recorded on the communication stream after it.
struct Pending {
  c10::intrusive_ptr<c10d::Work> work;
  std::shared_ptr<void> done;
};

// Starts `launch`: on Gloo at once (it returns as soon as the work is queued); on NCCL on the
// communication stream `which`, ordered after the compute stream's queued work.
Pending *start(Group *g, int which, const std::function<c10::intrusive_ptr<c10d::Work>()> &launch) {
  if (g->device >= 0) {
    return new Pending{nullptr, camel_cuda_on_comm_stream(g->device, which, launch)};
  }
  return new Pending{launch(), nullptr};
}

template <typename F>
int guarded(char *err, int err_len, F f) {
  try {
    f();
    return 0;
  } catch (const c10::Error &e) {
    set_err(err, err_len, e.what_without_backtrace());
  } catch (const std::exception &e) {
    set_err(err, err_len, e.what());
  } catch (...) {
    set_err(err, err_len, "unknown C++ exception");
  }
  return 1;
}

}  // namespace

extern "C" {

// backend: 0 Gloo, 1 NCCL. Rank 0 hosts the TCPStore unless `server` is 0 (torchrun's agent
// already serves one on MASTER_PORT).
// device: the rank's CUDA device for NCCL (-1 for Gloo).
void *camel_pg_new(int backend, const char *addr, int port, int server, int rank, int world,
                   long long timeout_ms, int device, char *err, int err_len) {
  Group *out = nullptr;
  guarded(err, err_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = server != 0;
    opts.numWorkers = world;
    opts.waitWorkers = false;
    opts.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(addr), opts);
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::PrefixStore>("camel", tcp);
    c10::intrusive_ptr<c10d::Backend> pg;
    if (backend == 0) {
      auto o = c10d::ProcessGroupGloo::Options::create(timeout);
      const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname) {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(addr)) {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(addr));
      } else {
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, o);
    } else {
      pg = camel_make_nccl(store, rank, world, timeout);
    }
    out = new Group{store, pg, timeout, backend == 0 ? -1 : device};
  });
  return out;
}

void camel_pg_free(void *g) { delete static_cast<Group *>(g); }

// op: 0 sum, 1 max.
int camel_pg_all_reduce(void *gp, at::Tensor *t, int op, char *err, int err_len) {
  return guarded(err, err_len, [&] {
    auto g = static_cast<Group *>(gp);
    std::vector<at::Tensor> ts{*t};
    c10d::AllreduceOptions o;
    o.reduceOp = op == 1 ? c10d::ReduceOp(c10d::ReduceOp::MAX) : c10d::ReduceOp(c10d::ReduceOp::SUM);
    o.timeout = g->timeout;
    finish(g, g->backend->allreduce(ts, o));
  });
}

int camel_pg_broadcast(void *gp, at::Tensor *t, int root, char *err, int err_len) {
  return guarded(err, err_len, [&] {
    auto g = static_cast<Group *>(gp);
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = g->timeout;
    finish(g, g->backend->broadcast(ts, o));
  });
}

// output: world × input's numel, rank r's input at [r·n, (r+1)·n).
int camel_pg_all_gather(void *gp, at::Tensor *output, at::Tensor *input, char *err, int err_len) {
  return guarded(err, err_len, [&] {
    auto g = static_cast<Group *>(gp);
    c10d::AllgatherOptions o;
    o.timeout = g->timeout;
    finish(g, g->backend->_allgather_base(*output, *input, o));
  });
}

// input: world × output's numel; rank r gets the sum over ranks of [r·n, (r+1)·n).
int camel_pg_reduce_scatter(void *gp, at::Tensor *output, at::Tensor *input, char *err, int err_len) {
  return guarded(err, err_len, [&] {
    auto g = static_cast<Group *>(gp);
    c10d::ReduceScatterOptions o;
    o.timeout = g->timeout;
    finish(g, g->backend->_reduce_scatter_base(*output, *input, o));
  });
}

// Started versions of the two collectives above: they return at once with a handle for
// camel_work_wait (null on failure, `err` set). The caller keeps `output` and `input` alive and
// unchanged until the wait.
void *camel_pg_all_gather_start(void *gp, at::Tensor *output, at::Tensor *input, char *err, int err_len) {
  Pending *out = nullptr;
  guarded(err, err_len, [&] {
    auto g = static_cast<Group *>(gp);
    at::Tensor o = *output, i = *input;
    out = start(g, 0, [&] {
      c10d::AllgatherOptions opts;
      opts.timeout = g->timeout;
      // NCCL: run on the communication stream made current by `start` (dist_cuda.cpp).
      opts.asyncOp = g->device < 0;
      return g->backend->_allgather_base(o, i, opts);
    });
  });
  return out;
}

void *camel_pg_reduce_scatter_start(void *gp, at::Tensor *output, at::Tensor *input, char *err, int err_len) {
  Pending *out = nullptr;
  guarded(err, err_len, [&] {
    auto g = static_cast<Group *>(gp);
    at::Tensor o = *output, i = *input;
    out = start(g, 1, [&] {
      c10d::ReduceScatterOptions opts;
      opts.timeout = g->timeout;
      opts.asyncOp = g->device < 0;
      return g->backend->_reduce_scatter_base(o, i, opts);
    });
  });
  return out;
}

// Waits for a started collective: Gloo blocks (with the group's timeout) until it is done; NCCL
// makes the compute stream wait for it. The handle stays the caller's (camel_work_free).
int camel_work_wait(void *gp, void *wp, char *err, int err_len) {
  return guarded(err, err_len, [&] {
    auto g = static_cast<Group *>(gp);
    auto w = static_cast<Pending *>(wp);
    if (w->done) {
      camel_cuda_wait_event(g->device, w->done);
    } else {
      finish(g, w->work);
    }
  });
}

void camel_work_free(void *wp) { delete static_cast<Pending *>(wp); }

int camel_pg_barrier(void *gp, char *err, int err_len) {
  return guarded(err, err_len, [&] {
    auto g = static_cast<Group *>(gp);
    c10d::BarrierOptions o;
    o.timeout = g->timeout;
    if (g->device >= 0) o.device_ids = {g->device};
    finish(g, g->backend->barrier(o));
  });
}

}  // extern "C"
