// The fused LAP layer as a PyTorch operator with its autograd in C++: an experiment, built and
// timed by benchmarks/cpp_fused_layer.py against the layer as torchlap ships it (a Python
// torch.autograd.Function around the same two kernel calls, torchlap/layers/fused.py).
//
// The operator calls the kernels of the library torchlap._ext loaded, through the addresses the
// script binds once (torchlap_bench_fused::bind_kernels), so both paths run the same code.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <array>
#include <cstdint>

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// lap_geometry and lap_layer_spec of lap_cpu.c
struct Geometry {
    int64_t B, C, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw;
};
struct Spec {
    int64_t hidden, concepts, aggregation, global, tiles;
};
constexpr int64_t kSetupSize = 17;  // 12 geometry + 5 spec entries, in struct order

using ForwardFn = int (*)(const void *x, const void *w1, const void *b1, const void *w2,
                          const void *b2, void *hid, void *conc, void *score, void *wn,
                          void *pooled, const Geometry *g, const Spec *s, double alpha,
                          double eps, int nthreads, const void *agg);
using BackwardFn = int (*)(const void *x, const void *w1, const void *w2, const void *hid,
                           const void *conc, const void *score, const void *wn,
                           const void *gpool, const void *gconc, const void *gscore, void *gx,
                           void *gparams, const Geometry *g, const Spec *s, double alpha,
                           double eps, int want_gw1, int nthreads, const void *agg);

// [0] float32, [1] float64; set by bind_kernels
std::array<ForwardFn, 2> forward_fns{nullptr, nullptr};
std::array<BackwardFn, 2> backward_fns{nullptr, nullptr};

int dtype_index(const Tensor &x) {
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                "torchlap fused_layer takes float32 or float64 tensors, got ", x.scalar_type());
    const int index = x.scalar_type() == at::kFloat ? 0 : 1;
    TORCH_CHECK(forward_fns[index] != nullptr && backward_fns[index] != nullptr,
                "fused_layer: no kernels bound (bind_kernels)");
    return index;
}

const void *pointer(const std::optional<Tensor> &t) {
    return t.has_value() && t->defined() ? t->data_ptr() : nullptr;
}
const void *pointer(const Tensor &t) { return t.defined() ? t.data_ptr() : nullptr; }

void check_status(int status, const char *what, const Tensor &x) {
    // the kernels allocate their work buffers before computing anything: nothing was written
    TORCH_CHECK_WITH(OutOfMemoryError, status == 0,
                     "torchlap: the CPU LAP kernel could not allocate the work buffers of ", what,
                     " on ", x.sizes(),
                     "; nothing was computed. Free memory or use a smaller batch "
                     "(TORCHLAP_NO_EXT=1 selects the pure-PyTorch path)");
}

struct Setup {
    Geometry g;
    Spec s;
};

Setup read_setup(at::IntArrayRef setup) {
    TORCH_CHECK(setup.size() == kSetupSize, "torchlap fused_layer: setup needs ", kSetupSize,
                " entries (12 geometry, 5 spec), got ", setup.size());
    Setup out;
    std::copy(setup.begin(), setup.begin() + 12, reinterpret_cast<int64_t *>(&out.g));
    std::copy(setup.begin() + 12, setup.end(), reinterpret_cast<int64_t *>(&out.s));
    return out;
}

// the "conv" aggregation's n weights and its bias side by side, as the kernels read them
Tensor aggregate(const std::optional<Tensor> &wa, const std::optional<Tensor> &ba) {
    if (!wa.has_value() || !wa->defined()) return Tensor();
    return at::cat({wa->reshape(-1), ba->reshape(-1)});
}

struct Forward {
    Tensor pooled, concepts, score, hid, weights;
};

Forward run_forward(const Tensor &x, const Tensor &w1, const Tensor &b1,
                    const std::optional<Tensor> &w2, const std::optional<Tensor> &b2,
                    const Tensor &agg, double alpha, double eps, const Setup &setup,
                    int64_t threads) {
    const int index = dtype_index(x);
    TORCH_CHECK(x.dim() == 4 && x.is_contiguous() && x.device().is_cpu(),
                "torchlap fused_layer takes a contiguous (B, C, H, W) CPU tensor, got ",
                x.sizes());
    const Geometry &g = setup.g;
    const Spec &s = setup.s;
    TORCH_CHECK(x.size(0) == g.B && x.size(1) == g.C && x.size(2) == g.H && x.size(3) == g.W,
                "torchlap fused_layer: the setup describes (", g.B, ", ", g.C, ", ", g.H, ", ",
                g.W, ") but x has shape ", x.sizes());
    const auto options = x.options();
    Forward out;
    if (s.hidden > 0) out.hid = at::empty({g.B, s.hidden, g.H, g.W}, options);
    out.concepts = at::empty({g.B, s.concepts, g.H, g.W}, options);
    out.score = at::empty({g.B, 1, g.H, g.W}, options);
    out.weights = at::empty({g.B, g.kh * g.kw, g.Ho, g.Wo}, options);
    out.pooled = at::empty({g.B, g.C, g.Ho, g.Wo}, options);
    const int status = forward_fns[index](
        x.data_ptr(), w1.data_ptr(), b1.data_ptr(), pointer(w2), pointer(b2),
        out.hid.defined() ? out.hid.data_ptr() : nullptr, out.concepts.data_ptr(),
        out.score.data_ptr(), out.weights.data_ptr(), out.pooled.data_ptr(), &g, &s, alpha, eps,
        static_cast<int>(threads), pointer(agg));
    check_status(status, "a LAP layer's forward", x);
    return out;
}

// without autograd (inference mode, or below the autograd key): the forward alone
std::tuple<Tensor, Tensor, Tensor> fused_layer_plain(
    const Tensor &x, const Tensor &w1, const Tensor &b1, const std::optional<Tensor> &w2,
    const std::optional<Tensor> &b2, const std::optional<Tensor> &wa,
    const std::optional<Tensor> &ba, const Tensor &alpha, double eps, at::IntArrayRef setup,
    int64_t threads) {
    const Forward out = run_forward(x, w1, b1, w2, b2, aggregate(wa, ba), alpha.item<double>(),
                                    eps, read_setup(setup), threads);
    return {out.pooled, out.concepts, out.score};
}

struct FusedLayer : public torch::autograd::Function<FusedLayer> {
    static variable_list forward(AutogradContext *ctx, Tensor x, Tensor w1, Tensor b1,
                                 std::optional<Tensor> w2, std::optional<Tensor> b2,
                                 std::optional<Tensor> wa, std::optional<Tensor> ba,
                                 Tensor alpha, double eps, at::IntArrayRef setup,
                                 int64_t threads) {
        const Setup parsed = read_setup(setup);
        const double alpha_value = alpha.item<double>();
        const Tensor agg = aggregate(wa, ba);
        Forward out = run_forward(x, w1, b1, w2, b2, agg, alpha_value, eps, parsed, threads);
        ctx->set_materialize_grads(false);
        ctx->save_for_backward({x, w1, w2.value_or(Tensor()), out.hid, out.concepts, out.score,
                                out.weights, agg});
        ctx->saved_data["setup"] = setup.vec();
        ctx->saved_data["alpha"] = alpha_value;
        ctx->saved_data["eps"] = eps;
        ctx->saved_data["threads"] = threads;
        // which optional inputs were given (the tensor inputs' edges skip the missing ones)
        ctx->saved_data["hidden"] = w2.has_value() && w2->defined();
        ctx->saved_data["conv"] = agg.defined();
        return {out.pooled, out.concepts, out.score};
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads) {
        TORCH_CHECK(!at::GradMode::is_enabled(),
                    "the fused CPU LAP layer has no double backward (create_graph=True); run "
                    "with TORCHLAP_NO_EXT=1 to use the PyTorch path, which has one");
        const variable_list saved = ctx->get_saved_variables();
        const Tensor &x = saved[0], &w1 = saved[1], &w2 = saved[2], &hid = saved[3];
        const Tensor &concepts = saved[4], &score = saved[5], &weights = saved[6],
                     &agg = saved[7];
        const Setup setup = read_setup(ctx->saved_data["setup"].toIntVector());
        const double alpha = ctx->saved_data["alpha"].toDouble();
        const double eps = ctx->saved_data["eps"].toDouble();
        const int64_t threads = ctx->saved_data["threads"].toInt();
        const bool hidden = ctx->saved_data["hidden"].toBool();
        const bool conv = ctx->saved_data["conv"].toBool();
        // edges: x, w1, b1, (w2, b2,) (wa, ba,) alpha
        size_t edge = 0;
        const bool need_x = ctx->needs_input_grad(edge++);
        const bool need_w1 = ctx->needs_input_grad(edge++);
        const bool need_b1 = ctx->needs_input_grad(edge++);
        bool need_w2 = false, need_b2 = false, need_wa = false, need_ba = false;
        if (hidden) {
            need_w2 = ctx->needs_input_grad(edge++);
            need_b2 = ctx->needs_input_grad(edge++);
        }
        if (conv) {
            need_wa = ctx->needs_input_grad(edge++);
            need_ba = ctx->needs_input_grad(edge++);
        }
        const bool need_alpha = ctx->needs_input_grad(edge++);

        const Tensor grad_x = need_x ? at::empty_like(x) : Tensor();
        // the parameter gradients, one after the other: w1, b1, (w2, b2,) (agg,) alpha
        std::vector<int64_t> sizes{w1.numel(), w1.size(0)};
        if (hidden) {
            sizes.push_back(w2.numel());
            sizes.push_back(w2.size(0));
        }
        if (conv) sizes.push_back(agg.numel());
        sizes.push_back(1);
        int64_t total = 0;
        for (const int64_t size : sizes) total += size;
        const Tensor flat = at::empty({total}, x.options());
        // contiguous copies (e.g. of an expanded gradient), held while the kernel reads them
        std::array<Tensor, 3> upstream;
        for (size_t i = 0; i < 3; ++i) {
            if (grads[i].defined()) upstream[i] = grads[i].contiguous();
        }
        const int status = backward_fns[dtype_index(x)](
            x.data_ptr(), w1.data_ptr(), pointer(w2), pointer(hid), concepts.data_ptr(),
            score.data_ptr(), weights.data_ptr(), pointer(upstream[0]), pointer(upstream[1]),
            pointer(upstream[2]), grad_x.defined() ? grad_x.data_ptr() : nullptr,
            flat.data_ptr(), &setup.g, &setup.s, alpha, eps, static_cast<int>(need_w1),
            static_cast<int>(threads), pointer(agg));
        check_status(status, "a LAP layer's backward", x);
        const std::vector<Tensor> parts = flat.split_with_sizes(sizes);
        Tensor grad_w2, grad_b2, grad_wa, grad_ba;
        size_t part = 2;
        if (hidden) {
            if (need_w2) grad_w2 = parts[part].view(w2.sizes());
            if (need_b2) grad_b2 = parts[part + 1];
            part += 2;
        }
        if (conv) {
            const int64_t n = agg.numel() - 1;
            if (need_wa) grad_wa = parts[part].narrow(0, 0, n).view({1, n, 1, 1});
            if (need_ba) grad_ba = parts[part].narrow(0, n, 1);
        }
        // one entry per forward argument, tensors or not
        return {grad_x,
                need_w1 ? parts[0].view(w1.sizes()) : Tensor(),
                need_b1 ? parts[1] : Tensor(),
                grad_w2,
                grad_b2,
                grad_wa,
                grad_ba,
                need_alpha ? parts.back().view({}) : Tensor(),
                Tensor(),
                Tensor(),
                Tensor()};
    }
};

std::tuple<Tensor, Tensor, Tensor> fused_layer_autograd(
    const Tensor &x, const Tensor &w1, const Tensor &b1, const std::optional<Tensor> &w2,
    const std::optional<Tensor> &b2, const std::optional<Tensor> &wa,
    const std::optional<Tensor> &ba, const Tensor &alpha, double eps, at::IntArrayRef setup,
    int64_t threads) {
    const variable_list out =
        FusedLayer::apply(x, w1, b1, w2, b2, wa, ba, alpha, eps, setup, threads);
    return {out[0], out[1], out[2]};
}

// The kernels' addresses (lap_layer_forward_f32, lap_layer_backward_f32, and the f64 pair), as
// cpp_fused_layer.py reads them from the library torchlap._ext loaded with ctypes.
void bind_kernels(int64_t forward32, int64_t backward32, int64_t forward64, int64_t backward64) {
    TORCH_CHECK(forward32 && backward32 && forward64 && backward64,
                "bind_kernels: every kernel address must be non-zero");
    forward_fns = {reinterpret_cast<ForwardFn>(forward32), reinterpret_cast<ForwardFn>(forward64)};
    backward_fns = {reinterpret_cast<BackwardFn>(backward32),
                    reinterpret_cast<BackwardFn>(backward64)};
}

}  // namespace

TORCH_LIBRARY(torchlap_bench_fused, m) {
    m.def(
        "fused_layer(Tensor x, Tensor w1, Tensor b1, Tensor? w2, Tensor? b2, Tensor? wa, "
        "Tensor? ba, Tensor alpha, float eps, int[] setup, int threads) -> (Tensor, Tensor, "
        "Tensor)");
    m.def("bind_kernels(int forward32, int backward32, int forward64, int backward64) -> ()",
          &bind_kernels);
}

TORCH_LIBRARY_IMPL(torchlap_bench_fused, CPU, m) { m.impl("fused_layer", &fused_layer_plain); }

TORCH_LIBRARY_IMPL(torchlap_bench_fused, AutogradCPU, m) { m.impl("fused_layer", &fused_layer_autograd); }
