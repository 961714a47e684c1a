// Fused TensorFlow CPU kernels for a mean-field Normal posterior in training
// steps that XLA does not compile (tfp_uq/_native/__init__.py builds and loads
// them; see its docstring for when they are used).
//
// TfpUqNormalPosterior, elementwise over a weight's posterior (loc, rho):
//   scale = softplus(rho) + floor                          (parameterization "softplus")
//   scale = (1 / prior_scale^2 + c exp(rho))^(-1/2) + floor (parameterization "curvature")
// with c = energy / max(kl_weight, min_kl_weight) (tfp_uq/_parameterization.py),
// energy laid out as [rows, 1] or [rows, columns] against a weight of shape
// [..., rows, columns] (a bias: [1, 1] against [columns]);
//   output = loc + scale * eps   ("sample"), scale * eps ("perturbation"),
//            or scale            ("scale")
//   kl = KL(N(loc, scale^2) || N(prior_loc, prior_scale^2)), summed
// with eps the same standard Normal draw as tfp_uq/_random.py (xxHash32 of the
// element index keyed by the seed's sub-stream, then Giles' inverse normal CDF
// as XLA computes it; equal to it up to float rounding). It also writes the two
// factors of the gradient with respect to rho, so the backward pass
// (TfpUqNormalPosteriorGrad) is two multiply-adds per element, not a second draw:
//   d output / d rho * (1 / g) = noise * d scale / d rho        (noise: eps, or 1)
//   d kl / d rho               = (scale / prior_scale^2 - 1 / scale) * d scale / d rho
// where d scale / d rho is sigmoid(rho) (softplus) or -u (1 - u^2 / prior_scale^2) / 2
// with u = scale - floor (curvature).
// The element loops are written so that the compiler vectorises them (its own
// exp and log polynomials, Cephes' as in Eigen; selects instead of branches).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor_util.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tfp_uq {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// xxHash32 primes (an 8-byte message) and the sub-stream stride of _random.py.
constexpr uint32_t kPrime2 = 0x85EBCA77u, kPrime3 = 0xC2B2AE3Du, kPrime4 = 0x27D4EB2Fu,
                   kPrime5 = 0x165667B1u;
constexpr int64_t kSubstreamStride = 1000003;
// Elements per work unit; the KL is summed per block, then over blocks in order,
// so its value does not depend on the number of threads.
constexpr int64_t kBlock = 2048;

#define TFP_UQ_INLINE inline __attribute__((always_inline))

TFP_UQ_INLINE uint32_t RotateLeft(uint32_t x, int bits) { return (x << bits) | (x >> (32 - bits)); }

TFP_UQ_INLINE uint32_t Xxh32(uint32_t word0, uint32_t word1, uint32_t seed) {
  uint32_t h = seed + kPrime5 + 8u;
  h = RotateLeft(h + word0 * kPrime3, 17) * kPrime4;
  h = RotateLeft(h + word1 * kPrime3, 17) * kPrime4;
  h ^= h >> 15;
  h *= kPrime2;
  h ^= h >> 13;
  h *= kPrime3;
  return h ^ (h >> 16);
}

TFP_UQ_INLINE float FromBits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

TFP_UQ_INLINE uint32_t ToBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

// log(x) for positive, normal, finite x (Cephes' logf polynomial).
TFP_UQ_INLINE float Log(float x) {
  const uint32_t bits = ToBits(x);
  float exponent = static_cast<float>(static_cast<int32_t>(bits >> 23) - 126);
  float m = FromBits((bits & 0x007fffffu) | 0x3f000000u);  // x = m 2^exponent, m in [0.5, 1)
  const bool small = m < 0.707106781186547524f;
  exponent = small ? exponent - 1.0f : exponent;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z + exponent * -2.12194440e-4f - 0.5f * z;
  return m + y + exponent * 0.693359375f;
}

// exp(x) for x <= 0 (Cephes' expf polynomial), clamped below at -87.
TFP_UQ_INLINE float ExpNonPositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  x = x - n * 0.693359375f - n * -2.12194440e-4f;
  const float z = x * x;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  return y * FromBits(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
}

// log(1 + t) for t in [0, 1], accurate for small t.
TFP_UQ_INLINE float Log1p(float t) {
  const float u = 1.0f + t;
  return u == 1.0f ? t : Log(u) * (t / (u - 1.0f));
}

// Standard Normal from 32 random bits, as tfp_uq/_random.py: ndtri(p) for
// p = (2k + 1) / 2^24, k the top 23 bits, computed as sqrt(2) erfinv(2p - 1)
// with Giles' single-precision erfinv (what XLA compiles ndtri to).
TFP_UQ_INLINE float NormalFromBits(uint32_t bits) {
  const float x = static_cast<float>(static_cast<int32_t>(bits >> 9)) * 0x1p-22f + (0x1p-23f - 1.0f);
  float w = -Log((1.0f - x) * (1.0f + x));
  const bool central = w < 5.0f;
  w = central ? w - 2.5f : std::sqrt(w) - 3.0f;
  float p = central ? 2.81022636e-08f : -0.000200214257f;
  p = (central ? 3.43273939e-07f : 0.000100950558f) + p * w;
  p = (central ? -3.5233877e-06f : 0.00134934322f) + p * w;
  p = (central ? -4.39150654e-06f : -0.00367342844f) + p * w;
  p = (central ? 0.00021858087f : 0.00573950773f) + p * w;
  p = (central ? -0.00125372503f : -0.0076224613f) + p * w;
  p = (central ? -0.00417768164f : 0.00943887047f) + p * w;
  p = (central ? 0.246640727f : 1.00167406f) + p * w;
  p = (central ? 1.50140941f : 2.83297682f) + p * w;
  return 1.41421356237309505f * p * x;
}

enum class Output { kSample, kPerturbation, kScale };
// How rho maps to the scale: softplus, or the curvature form with one
// coefficient c for the whole span of elements (a row of a Dense kernel, a
// bias) or one per element (the [rows, columns] layout of a convolution's).
enum class Scale { kSoftplus, kCurvatureRow, kCurvatureElement };

struct Keys {
  uint32_t key0, key1;
};

// The two hashed words keying sub-stream `substream` of a [2] int64 seed,
// as _random._bits computes them.
Keys KeysOf(const Tensor& seed, int64_t substream) {
  const auto words = seed.flat<int64_t>();
  const uint32_t word0 = static_cast<uint32_t>(words(0) + substream * kSubstreamStride);
  const uint32_t word1 = static_cast<uint32_t>(words(1));
  return {Xxh32(word0, word1, 0u), Xxh32(word0, word1, 1u)};
}

struct Prior {
  float loc, inverse_variance;
};

// One span of the forward pass; returns the span's sum of KL terms (without
// the per-element constant log(prior_scale) - 1/2). `energy` points to the
// span's first energy (curvature only).
template <Output kOutput, Scale kScale>
float ForwardSpan(const float* __restrict loc, const float* __restrict rho, float* __restrict output,
                  float* __restrict output_drho, float* __restrict kl_drho, int32_t begin, int32_t end,
                  Keys keys, Prior prior, float floor, const float* __restrict energy,
                  float inverse_kl_weight) {
  const float row_coefficient = kScale == Scale::kCurvatureRow ? energy[0] * inverse_kl_weight : 0.0f;
  float kl = 0.0f;
#pragma omp simd reduction(+ : kl)
  for (int32_t i = begin; i < end; ++i) {
    const float r = rho[i];
    const float t = ExpNonPositive(-std::fabs(r));
    float scale, dscale;
    if (kScale == Scale::kSoftplus) {
      const float softplus = (r > 0.0f ? r : 0.0f) + Log1p(t);
      dscale = (r > 0.0f ? 1.0f : t) / (1.0f + t);  // sigmoid(rho)
      scale = (r != r ? r : softplus) + floor;  // NaN stays NaN
    } else {
      const float c = kScale == Scale::kCurvatureRow ? row_coefficient : energy[i - begin] * inverse_kl_weight;
      // u^2 = 1 / (p + c e^r), written with t = e^-|r| so that nothing overflows.
      const bool positive = r > 0.0f;
      const float variance = (positive ? t : 1.0f) / (positive ? prior.inverse_variance * t + c
                                                             : prior.inverse_variance + c * t);
      const float u = std::sqrt(variance);
      dscale = -0.5f * u * (1.0f - prior.inverse_variance * variance);
      scale = (r != r ? r : u) + floor;
    }
    float noise = 1.0f;
    if (kOutput != Output::kScale) {
      noise = NormalFromBits(Xxh32(static_cast<uint32_t>(i), keys.key1, keys.key0));
    }
    if (kOutput == Output::kSample) {
      output[i] = loc[i] + scale * noise;
    } else {
      output[i] = scale * noise;
    }
    const float centred = loc[i] - prior.loc;
    kl += (scale * scale + centred * centred) * (0.5f * prior.inverse_variance) - Log(scale);
    output_drho[i] = noise * dscale;
    kl_drho[i] = (scale * prior.inverse_variance - 1.0f / scale) * dscale;
  }
  return kl;
}

using ForwardFn = float (*)(const float*, const float*, float*, float*, float*, int32_t, int32_t, Keys, Prior,
                            float, const float*, float);

template <Output kOutput>
ForwardFn ForwardOf(Scale scale) {
  return scale == Scale::kSoftplus       ? ForwardSpan<kOutput, Scale::kSoftplus>
         : scale == Scale::kCurvatureRow ? ForwardSpan<kOutput, Scale::kCurvatureRow>
                                         : ForwardSpan<kOutput, Scale::kCurvatureElement>;
}

void BackwardBlock(const float* __restrict grad_output, float grad_kl, const float* __restrict loc,
                   const float* __restrict output_drho, const float* __restrict kl_drho,
                   float* __restrict grad_loc, float* __restrict grad_rho, int32_t begin,
                   int32_t end, float output_dloc, Prior prior) {
  const float kl_dloc = grad_kl * prior.inverse_variance;
#pragma omp simd
  for (int32_t i = begin; i < end; ++i) {
    grad_loc[i] = output_dloc * grad_output[i] + kl_dloc * (loc[i] - prior.loc);
    grad_rho[i] = grad_output[i] * output_drho[i] + grad_kl * kl_drho[i];
  }
}

// Runs fn(block, begin, end) over blocks of [0, size) on TensorFlow's CPU threads.
template <typename Fn>
void ForBlocks(OpKernelContext* context, int64_t size, int64_t cost_per_element, Fn fn) {
  auto* threads = context->device()->tensorflow_cpu_worker_threads();
  ::tensorflow::Shard(threads->num_threads, threads->workers, (size + kBlock - 1) / kBlock,
                      kBlock * cost_per_element, [&](int64_t first, int64_t last) {
                        for (int64_t block = first; block < last; ++block) {
                          fn(block, static_cast<int32_t>(block * kBlock),
                             static_cast<int32_t>(std::min(size, (block + 1) * kBlock)));
                        }
                      });
}

// Standard Normal or Rademacher draws of a given shape from a [2] int64 seed,
// as _random.normal and _random.rademacher draw them.
class RandomOp : public OpKernel {
 public:
  explicit RandomOp(OpKernelConstruction* context) : OpKernel(context) {
    std::string distribution;
    OP_REQUIRES_OK(context, context->GetAttr("distribution", &distribution));
    rademacher_ = distribution == "rademacher";
  }

  void Compute(OpKernelContext* context) override {
    TensorShape shape;
    OP_REQUIRES_OK(context, ::tensorflow::tensor::MakeShape(context->input(0), &shape));
    const Tensor& seed = context->input(1);
    OP_REQUIRES(context, seed.NumElements() == 2,
                absl::InvalidArgumentError("seed must have 2 elements"));
    const int64_t size = shape.num_elements();
    OP_REQUIRES(context, size <= INT32_MAX,
                absl::InvalidArgumentError("a draw can have at most 2^31 - 1 elements"));
    Tensor* output;
    OP_REQUIRES_OK(context, context->allocate_output(0, shape, &output));
    const Keys keys = KeysOf(seed, 0);
    float* data = output->flat<float>().data();
    if (rademacher_) {
      // 32 signs per word; word j is the sum of hashes 2j and 2j + 1.
      const int64_t words = (size + 31) / 32;
      ForBlocks(context, words, 100, [&](int64_t, int32_t begin, int32_t end) {
        for (int32_t j = begin; j < end; ++j) {
          const uint32_t index = static_cast<uint32_t>(j);
          const uint32_t word = Xxh32(2 * index, keys.key1, keys.key0) +
                                Xxh32(2 * index + 1, keys.key1, keys.key0);
          float* signs = data + 32 * static_cast<int64_t>(j);
          const int32_t count = static_cast<int32_t>(std::min<int64_t>(32, size - 32 * static_cast<int64_t>(j)));
#pragma omp simd
          for (int32_t bit = 0; bit < count; ++bit) {
            signs[bit] = static_cast<float>((word >> bit) & 1u) * 2.0f - 1.0f;
          }
        }
      });
    } else {
      ForBlocks(context, size, 100, [&](int64_t, int32_t begin, int32_t end) {
#pragma omp simd
        for (int32_t i = begin; i < end; ++i) {
          data[i] = NormalFromBits(Xxh32(static_cast<uint32_t>(i), keys.key1, keys.key0));
        }
      });
    }
  }

 private:
  bool rademacher_;
};

class PosteriorKernelBase : public OpKernel {
 public:
  explicit PosteriorKernelBase(OpKernelConstruction* context) : OpKernel(context) {
    std::string kind;
    float prior_scale;
    OP_REQUIRES_OK(context, context->GetAttr("kind", &kind));
    OP_REQUIRES_OK(context, context->GetAttr("prior_loc", &prior_.loc));
    OP_REQUIRES_OK(context, context->GetAttr("prior_scale", &prior_scale));
    OP_REQUIRES(context, prior_scale > 0.0f,
                absl::InvalidArgumentError("prior_scale must be positive"));
    prior_.inverse_variance = 1.0f / (prior_scale * prior_scale);
    log_prior_scale_ = std::log(static_cast<double>(prior_scale));
    output_ = kind == "sample" ? Output::kSample
              : kind == "perturbation" ? Output::kPerturbation
                                         : Output::kScale;
  }

 protected:
  Output output_;
  Prior prior_;
  double log_prior_scale_;
};

class NormalPosteriorOp : public PosteriorKernelBase {
 public:
  explicit NormalPosteriorOp(OpKernelConstruction* context) : PosteriorKernelBase(context) {
    std::string parameterization;
    OP_REQUIRES_OK(context, context->GetAttr("substream", &substream_));
    OP_REQUIRES_OK(context, context->GetAttr("floor", &floor_));
    OP_REQUIRES_OK(context, context->GetAttr("parameterization", &parameterization));
    OP_REQUIRES_OK(context, context->GetAttr("min_kl_weight", &min_kl_weight_));
    curvature_ = parameterization == "curvature";
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& loc = context->input(0);
    const Tensor& rho = context->input(1);
    const Tensor& seed = context->input(2);
    OP_REQUIRES(context, loc.shape() == rho.shape(),
                absl::InvalidArgumentError("loc and rho must have the same shape"));
    OP_REQUIRES(context, seed.NumElements() == 2,
                absl::InvalidArgumentError("seed must have 2 elements"));
    const int64_t size = loc.NumElements();
    OP_REQUIRES(context, size <= INT32_MAX,
                absl::InvalidArgumentError("a posterior can have at most 2^31 - 1 elements"));
    Tensor *output, *kl, *output_drho, *kl_drho;
    OP_REQUIRES_OK(context, context->allocate_output(0, loc.shape(), &output));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({}), &kl));
    OP_REQUIRES_OK(context, context->allocate_output(2, loc.shape(), &output_drho));
    OP_REQUIRES_OK(context, context->allocate_output(3, loc.shape(), &kl_drho));
    // Curvature: energy [rows, 1 or columns] against loc [..., rows, columns].
    const Tensor& energy = context->input(3);
    int64_t rows = 1, columns = 1, energy_columns = 1;
    float inverse_kl_weight = 0.0f;
    if (curvature_) {
      columns = loc.dims() > 0 ? loc.dim_size(loc.dims() - 1) : 1;
      rows = energy.dims() == 2 ? energy.dim_size(0) : 0;
      energy_columns = energy.dims() == 2 ? energy.dim_size(1) : 0;
      const int64_t loc_rows = loc.dims() > 1 ? loc.dim_size(loc.dims() - 2) : 1;
      OP_REQUIRES(context, rows == loc_rows && (energy_columns == 1 || energy_columns == columns),
                  absl::InvalidArgumentError("energy must be [rows, 1] or [rows, columns] of loc's last two axes"));
      const float kl_weight = context->input(4).scalar<float>()();
      inverse_kl_weight = 1.0f / std::max(kl_weight, min_kl_weight_);
    }
    const float* energy_data = curvature_ ? energy.flat<float>().data() : nullptr;
    const Keys keys = KeysOf(seed, substream_);
    const float* loc_data = loc.flat<float>().data();
    const float* rho_data = rho.flat<float>().data();
    float* output_data = output->flat<float>().data();
    float* output_drho_data = output_drho->flat<float>().data();
    float* kl_drho_data = kl_drho->flat<float>().data();
    std::vector<float> block_kl((size + kBlock - 1) / kBlock);
    const Scale scale = !curvature_ ? Scale::kSoftplus
                        : energy_columns == 1 ? Scale::kCurvatureRow
                                              : Scale::kCurvatureElement;
    const ForwardFn forward = output_ == Output::kSample         ? ForwardOf<Output::kSample>(scale)
                              : output_ == Output::kPerturbation ? ForwardOf<Output::kPerturbation>(scale)
                                                                 : ForwardOf<Output::kScale>(scale);
    ForBlocks(context, size, 200, [&](int64_t block, int32_t begin, int32_t end) {
      float block_sum = 0.0f;
      // Spans within a row of loc's last axis share the energy's row.
      for (int32_t span = begin; span < end;) {
        const int64_t within = span % (rows * columns), column = within % columns;
        const int32_t span_end = curvature_ ? static_cast<int32_t>(std::min<int64_t>(end, span + columns - column))
                                            : end;
        const float* span_energy =
            curvature_ ? energy_data + (within / columns) * energy_columns + (energy_columns == 1 ? 0 : column)
                       : nullptr;
        block_sum += forward(loc_data, rho_data, output_data, output_drho_data, kl_drho_data, span, span_end,
                             keys, prior_, floor_, span_energy, inverse_kl_weight);
        span = span_end;
      }
      block_kl[block] = block_sum;
    });
    double total = static_cast<double>(size) * (log_prior_scale_ - 0.5);
    for (float value : block_kl) total += value;
    kl->scalar<float>()() = static_cast<float>(total);
  }

 private:
  int64_t substream_;
  float floor_, min_kl_weight_;
  bool curvature_;
};

class NormalPosteriorGradOp : public PosteriorKernelBase {
 public:
  using PosteriorKernelBase::PosteriorKernelBase;

  void Compute(OpKernelContext* context) override {
    const Tensor& grad_output = context->input(0);
    const Tensor& loc = context->input(2);
    const Tensor& output_drho = context->input(3);
    const Tensor& kl_drho = context->input(4);
    OP_REQUIRES(context,
                grad_output.shape() == loc.shape() && output_drho.shape() == loc.shape() &&
                    kl_drho.shape() == loc.shape(),
                absl::InvalidArgumentError("all inputs but grad_kl must have loc's shape"));
    const float grad_kl = context->input(1).scalar<float>()();
    Tensor *grad_loc, *grad_rho;
    OP_REQUIRES_OK(context, context->allocate_output(0, loc.shape(), &grad_loc));
    OP_REQUIRES_OK(context, context->allocate_output(1, loc.shape(), &grad_rho));
    const float output_dloc = output_ == Output::kSample ? 1.0f : 0.0f;
    const float* grad_output_data = grad_output.flat<float>().data();
    const float* loc_data = loc.flat<float>().data();
    const float* output_drho_data = output_drho.flat<float>().data();
    const float* kl_drho_data = kl_drho.flat<float>().data();
    float* grad_loc_data = grad_loc->flat<float>().data();
    float* grad_rho_data = grad_rho->flat<float>().data();
    ForBlocks(context, loc.NumElements(), 10, [&](int64_t, int32_t begin, int32_t end) {
      BackwardBlock(grad_output_data, grad_kl, loc_data, output_drho_data, kl_drho_data,
                    grad_loc_data, grad_rho_data, begin, end, output_dloc, prior_);
    });
  }
};

}  // namespace

REGISTER_OP("TfpUqNormalPosterior")
    .Input("loc: float")
    .Input("rho: float")
    .Input("seed: int64")
    .Input("energy: float")
    .Input("kl_weight: float")
    .Attr("kind: {'sample', 'perturbation', 'scale'}")
    .Attr("substream: int")
    .Attr("prior_loc: float")
    .Attr("prior_scale: float")
    .Attr("floor: float")
    .Attr("parameterization: {'softplus', 'curvature'} = 'softplus'")
    .Attr("min_kl_weight: float = 1e-12")
    .Output("output: float")
    .Output("kl: float")
    .Output("output_drho: float")
    .Output("kl_drho: float")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->Scalar());
      c->set_output(2, c->input(0));
      c->set_output(3, c->input(0));
      return absl::OkStatus();
    });

REGISTER_OP("TfpUqNormalPosteriorGrad")
    .Input("grad_output: float")
    .Input("grad_kl: float")
    .Input("loc: float")
    .Input("output_drho: float")
    .Input("kl_drho: float")
    .Attr("kind: {'sample', 'perturbation', 'scale'}")
    .Attr("prior_loc: float")
    .Attr("prior_scale: float")
    .Output("grad_loc: float")
    .Output("grad_rho: float")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(2));
      c->set_output(1, c->input(2));
      return absl::OkStatus();
    });

REGISTER_OP("TfpUqRandom")
    .Input("shape: int32")
    .Input("seed: int64")
    .Attr("distribution: {'normal', 'rademacher'}")
    .Output("output: float")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle shape;
      TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(0, &shape));
      c->set_output(0, shape);
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("TfpUqNormalPosterior").Device(::tensorflow::DEVICE_CPU),
                        NormalPosteriorOp);
REGISTER_KERNEL_BUILDER(Name("TfpUqNormalPosteriorGrad").Device(::tensorflow::DEVICE_CPU),
                        NormalPosteriorGradOp);
REGISTER_KERNEL_BUILDER(Name("TfpUqRandom").Device(::tensorflow::DEVICE_CPU).HostMemory("shape"),
                        RandomOp);

}  // namespace tfp_uq
