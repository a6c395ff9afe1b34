// What the Rust optimizer needs from libtorch that tch does not bind: the fused AdamW kernel
// (`at::_fused_adamw_`, what torch.optim.AdamW(fused=True) calls) and dropping a parameter's
// gradient (`zero_grad(set_to_none=True)`). Tensors arrive as tch's raw `at::Tensor*`. Errors are
// returned as text, never thrown across the C boundary.

#include <ATen/core/Tensor.h>
#include <ATen/ops/_fused_adamw.h>

#include <cstring>
#include <exception>
#include <vector>

extern "C" int camel_fused_adamw(at::Tensor **params, at::Tensor **grads, at::Tensor **exp_avgs,
                                 at::Tensor **exp_avg_sqs, at::Tensor **steps, int n, double lr,
                                 double beta1, double beta2, double weight_decay, double eps,
                                 char *err, int err_len) {
  try {
    std::vector<at::Tensor> p, g, m, v, s;
    for (int i = 0; i < n; i++) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
      s.push_back(*steps[i]);
    }
    at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false);
    return 0;
  } catch (const std::exception &e) {
    std::strncpy(err, e.what(), err_len - 1);
    err[err_len - 1] = 0;
    return 1;
  }
}

// `param.grad = None`: the next backward hands its gradient over instead of adding it into zeros.
extern "C" void camel_grad_reset(at::Tensor *param) { param->mutable_grad().reset(); }
