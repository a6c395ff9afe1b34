//! AdamW as `torch.optim.AdamW` computes it, with HF Trainer's parameter groups (no weight decay for
//! norm weights) and `torch.nn.utils.clip_grad_norm_`. Moments are fp32 tensors beside fp32 master
//! weights. Two implementations, named as HF Trainer's `optim`:
//!
//! * `adamw_torch_fused` (the default, as HF's with torch ≥ 2.8): libtorch's fused kernel
//!   `_fused_adamw_`, one call per parameter group, through a small C++ shim (src/fused_adamw.cpp).
//! * `adamw_torch`: torch's single-tensor path, operation for operation. tch exposes
//!   `addcmul_`/`addcdiv_` without their `value` argument; libtorch's kernels compute
//!   `self + value * a * b` and `self + value * a / b` left to right, so folding `value` into the
//!   first operand gives the same rounding.

use anyhow::Result;
use tch::{Kind, Tensor};

unsafe extern "C" {
    fn camel_fused_adamw(
        params: *const *mut torch_sys::C_tensor,
        grads: *const *mut torch_sys::C_tensor,
        exp_avgs: *const *mut torch_sys::C_tensor,
        exp_avg_sqs: *const *mut torch_sys::C_tensor,
        steps: *const *mut torch_sys::C_tensor,
        n: std::os::raw::c_int,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut std::os::raw::c_char,
        err_len: std::os::raw::c_int,
    ) -> std::os::raw::c_int;
    fn camel_grad_reset(param: *mut torch_sys::C_tensor);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Implementation {
    Fused,
    SingleTensor,
}

impl Implementation {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "adamw_torch_fused" => Ok(Implementation::Fused),
            "adamw_torch" => Ok(Implementation::SingleTensor),
            other => anyhow::bail!("unknown optim {other:?} (adamw_torch_fused or adamw_torch)"),
        }
    }
}

pub struct AdamW {
    pub implementation: Implementation,
    pub params: Vec<(String, Tensor)>,
    pub decay: Vec<bool>,
    pub exp_avg: Vec<Tensor>,
    pub exp_avg_sq: Vec<Tensor>,
    /// Optimizer steps taken (torch's `state["step"]`).
    pub step: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    /// The optimizer a training job asks for (its betas, eps, weight decay and implementation),
    /// over `params`, with HF's no-decay rule for biases and norms. Both step strategies build it
    /// here (replicated over whole tensors, sharded over each rank's pieces).
    pub fn for_training(params: Vec<(String, Tensor)>, p: &crate::job::TrainParams) -> Result<Self> {
        let mut opt = AdamW::new(
            params,
            crate::model::is_no_decay,
            p.adam_beta1,
            p.adam_beta2,
            p.adam_eps,
            p.weight_decay,
        );
        opt.implementation = Implementation::from_name(&p.optim)?;
        Ok(opt)
    }

    pub fn new(
        params: Vec<(String, Tensor)>,
        no_decay: impl Fn(&str) -> bool,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    ) -> Self {
        let decay = params.iter().map(|(n, _)| !no_decay(n)).collect();
        let exp_avg = params.iter().map(|(_, p)| p.zeros_like().to_kind(Kind::Float)).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| p.zeros_like().to_kind(Kind::Float)).collect();
        AdamW {
            implementation: Implementation::Fused,
            params,
            decay,
            exp_avg,
            exp_avg_sq,
            step: 0,
            beta1,
            beta2,
            eps,
            weight_decay,
        }
    }

    /// One update at learning rate `lr` from the accumulated gradients.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
        self.step_with_grads(lr, &grads)
    }

    /// One update from explicit gradients, one per parameter (undefined: skipped), for
    /// parameters whose gradients live elsewhere (FSDP's sharded flat gradients).
    pub fn step_with_grads(&mut self, lr: f64, grads: &[Tensor]) -> Result<()> {
        anyhow::ensure!(grads.len() == self.params.len(), "one gradient per parameter");
        match self.implementation {
            Implementation::Fused => self.step_fused(lr, grads),
            Implementation::SingleTensor => {
                self.step_single_tensor(lr, grads);
                Ok(())
            }
        }
    }

    fn step_fused(&mut self, lr: f64, grads: &[Tensor]) -> Result<()> {
        self.step += 1;
        for decay in [true, false] {
            let wd = if decay { self.weight_decay } else { 0.0 };
            let mut keep = Vec::new();
            let (mut p, mut g, mut m, mut v, mut s) = (vec![], vec![], vec![], vec![], vec![]);
            for (i, (_, param)) in self.params.iter().enumerate() {
                let grad = grads[i].shallow_clone();
                if self.decay[i] != decay || !grad.defined() {
                    continue;
                }
                // torch keeps `step` as a float32 scalar on the parameter's device.
                let step = Tensor::from(self.step as f32).to_device(param.device());
                p.push(param.as_ptr() as *mut _);
                g.push(grad.as_ptr() as *mut _);
                m.push(self.exp_avg[i].as_ptr() as *mut _);
                v.push(self.exp_avg_sq[i].as_ptr() as *mut _);
                s.push(step.as_ptr() as *mut _);
                keep.push((grad, step));
            }
            if p.is_empty() {
                continue;
            }
            let mut err = [0 as std::os::raw::c_char; 512];
            // SAFETY: every pointer is a live at::Tensor owned by `self` or `keep` for the call.
            let rc = unsafe {
                camel_fused_adamw(
                    p.as_ptr(),
                    g.as_ptr(),
                    m.as_ptr(),
                    v.as_ptr(),
                    s.as_ptr(),
                    p.len() as _,
                    lr,
                    self.beta1,
                    self.beta2,
                    wd,
                    self.eps,
                    err.as_mut_ptr(),
                    err.len() as _,
                )
            };
            if rc != 0 {
                // SAFETY: the shim NUL-terminates the message.
                let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
                anyhow::bail!("the fused AdamW kernel failed: {msg}");
            }
        }
        Ok(())
    }

    fn step_single_tensor(&mut self, lr: f64, grads: &[Tensor]) {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - b1.powf(self.step as f64);
        let bc2 = 1.0 - b2.powf(self.step as f64);
        let step_size = lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter().enumerate() {
                let g = &grads[i];
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                if self.decay[i] && self.weight_decay != 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let _ = self.exp_avg[i].lerp_(g, 1.0 - b1);
                let _ = self.exp_avg_sq[i].g_mul_scalar_(b2);
                let _ = self.exp_avg_sq[i].addcmul_(&(g * (1.0 - b2)), g);
                let mut denom = self.exp_avg_sq[i].sqrt() / bc2_sqrt;
                let _ = denom.g_add_scalar_(self.eps);
                let _ = p.addcdiv_(&(&self.exp_avg[i] * -step_size), &denom);
            }
        });
    }

    /// Drops every parameter's gradient, as torch's `zero_grad(set_to_none=True)` (HF Trainer's):
    /// the next backward hands its gradient over instead of adding it into a zeroed one (a write
    /// and a read of each gradient less per step), and the gradients take no memory between the
    /// optimizer step and the next backward. The values are those of adding into zeros.
    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            // SAFETY: `p` is a live at::Tensor owned by `self` for the call.
            unsafe { camel_grad_reset(p.as_ptr() as *mut _) };
        }
    }

    /// Moments by parameter name, for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (n, _)) in self.params.iter().enumerate() {
            out.push((format!("exp_avg.{n}"), self.exp_avg[i].shallow_clone()));
            out.push((format!("exp_avg_sq.{n}"), self.exp_avg_sq[i].shallow_clone()));
        }
        out
    }

    /// Restores moments written by [`AdamW::state_tensors`].
    pub fn load_state(
        &mut self,
        state: &std::collections::BTreeMap<String, Tensor>,
        step: u64,
    ) -> Result<()> {
        for (i, (n, _)) in self.params.iter().enumerate() {
            for (prefix, dst) in [("exp_avg", &mut self.exp_avg[i]), ("exp_avg_sq", &mut self.exp_avg_sq[i])]
            {
                let key = format!("{prefix}.{n}");
                let t =
                    state.get(&key).ok_or_else(|| anyhow::anyhow!("optimizer checkpoint lacks `{key}`"))?;
                anyhow::ensure!(t.size() == dst.size(), "optimizer tensor `{key}` has the wrong shape");
                tch::no_grad(|| dst.copy_(t));
            }
        }
        self.step = step;
        Ok(())
    }
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)`: the total 2-norm of all gradients (before
/// clipping) is returned; gradients are scaled by min(1, max_norm / (norm + 1e-6)).
pub fn clip_grad_norm(params: &[(String, Tensor)], max_norm: f64) -> f64 {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads
            .iter()
            .map(|g| g.reshape([-1]).linalg_norm(2.0, None::<&[i64]>, false, None::<Kind>))
            .collect();
        let total = Tensor::stack(&norms, 0).linalg_norm(2.0, None::<&[i64]>, false, None::<Kind>);
        if max_norm > 0.0 {
            let coef = (max_norm / (&total + 1e-6)).clamp_max(1.0);
            for g in &grads {
                let _ = g.shallow_clone().g_mul_(&coef);
            }
        }
        total.double_value(&[])
    })
}
