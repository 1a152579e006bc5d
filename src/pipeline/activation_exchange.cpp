#include "saetraj/pipeline/activation_exchange.h"

#include "saetraj/core/error.h"

namespace saetraj::pipeline {

namespace {

void send_tensor(const dist::Communicator& comm, const torch::Tensor& t, int dest, int tag) {
  const auto c = t.to(torch::kFloat32).contiguous();
  comm.send(c.data_ptr<float>(), c.numel() * sizeof(float), dest, tag);
}

torch::Tensor recv_tensor(const dist::Communicator& comm, std::vector<int64_t> shape, int tag) {
  auto t = torch::empty(shape, torch::kFloat32);
  comm.recv(t.data_ptr<float>(), t.numel() * sizeof(float), 0, tag);
  return t;
}

// A tensor as the transport sends it: float32, contiguous, in the transport's memory. On the host path
// this is what send_tensor makes of it, so the bytes on the wire are the same.
torch::Tensor to_wire(const torch::Tensor& t, const torch::Device& device) {
  return t.to(device, torch::kFloat32).contiguous();
}

dist::SendBuffer send_buffer(const torch::Tensor& t) {
  return {t.data_ptr<float>(), static_cast<size_t>(t.numel()) * sizeof(float)};
}

dist::RecvBuffer recv_buffer(torch::Tensor& t) {
  return {t.data_ptr<float>(), static_cast<size_t>(t.numel()) * sizeof(float)};
}

bool owns(const dist::WorkPlan& plan, int rank, int layer_index) {
  const auto& li = plan.group_for(rank).layer_indices;
  return std::find(li.begin(), li.end(), layer_index) != li.end();
}

}  // namespace

ActivationExchange::ActivationExchange(const dist::Communicator& comm, const dist::Transport& transport,
                                       const dist::WorkPlan& plan, const std::vector<int>& layers, int64_t d_model,
                                       int64_t n_heads, const model::Model* model, const torch::Device& compute_device,
                                       bool mlp)
    : comm_(comm),
      transport_(transport),
      device_(transport.cuda_device() < 0 ? torch::Device(torch::kCPU)
                                          : torch::Device(torch::kCUDA, transport.cuda_device())),
      compute_device_(compute_device), plan_(plan), layers_(layers), d_model_(d_model), n_heads_(n_heads),
      model_(model), mlp_(mlp) {
  c10::InferenceMode guard;
  const bool root = comm.rank() == 0;
  SAETRAJ_CHECK(!root || model, Error, "rank 0 must hold the model");
  // Per layer: has b_O, has a post-attention norm, its eps.
  std::vector<double> flags(3 * layers.size(), 0.0);
  if (root) {
    for (size_t i = 0; i < layers.size(); ++i) {
      flags[3 * i] = model->attention_output_bias(layers[i]).defined() ? 1.0 : 0.0;
      const auto norm = model->post_attention_norm(layers[i]);
      flags[3 * i + 1] = norm.enabled ? 1.0 : 0.0;
      flags[3 * i + 2] = norm.eps;
    }
  }
  comm.broadcast(flags.data(), flags.size() * sizeof(double), 0);
  for (size_t i = 0; i < layers.size(); ++i) {
    const int li = static_cast<int>(i);
    const bool has_bias = flags[3 * i] != 0.0, has_norm = flags[3 * i + 1] != 0.0;
    if (root) {
      const auto bias = model->attention_output_bias(layers[i]);
      const auto norm = model->post_attention_norm(layers[i]);
      for (int r = 1; r < comm.size(); ++r) {
        if (!owns(plan, r, li)) continue;
        if (has_bias) send_tensor(comm, bias, r, li);
        if (has_norm) send_tensor(comm, norm.weight, r, li);
      }
      if (owns(plan, 0, li)) {
        biases_[li] = bias;
        norms_[li] = norm;
      }
    } else if (owns(plan, comm.rank(), li)) {
      biases_[li] = has_bias ? recv_tensor(comm, {d_model}, li) : torch::Tensor();
      model::PostAttentionNorm norm;
      norm.enabled = has_norm;
      norm.eps = flags[3 * i + 2];
      if (has_norm) norm.weight = recv_tensor(comm, {d_model}, li);
      norms_[li] = norm;
    }
  }
  for (auto& [li, bias] : biases_) {
    if (bias.defined()) bias = bias.to(compute_device_);
  }
  for (auto& [li, norm] : norms_) {
    if (norm.weight.defined()) norm.weight = norm.weight.to(compute_device_);
  }
}

std::map<int, LayerActivations> ActivationExchange::distribute(const model::ForwardCapture* capture,
                                                               int64_t n) const {
  c10::InferenceMode guard;
  const bool root = comm_.rank() == 0;
  std::map<int, LayerActivations> mine;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const int li = static_cast<int>(i);
    if (root) {
      const auto& cap = capture->layers.at(layers_[i]);
      const auto head_out = model_->head_outputs(layers_[i], cap.values);
      std::vector<torch::Tensor> wire;
      for (int r = 1; r < comm_.size(); ++r) {
        if (!owns(plan_, r, li)) continue;
        if (wire.empty()) {
          wire = {to_wire(cap.resid_pre, device_), to_wire(cap.pattern, device_), to_wire(head_out, device_)};
          if (mlp_) {
            for (const auto* t : {&cap.mlp_in, &cap.resid_mid, &cap.resid_post}) wire.push_back(to_wire(*t, device_));
          }
        }
        std::vector<dist::SendBuffer> buffers;
        for (const auto& t : wire) buffers.push_back(send_buffer(t));
        transport_.send(buffers, r, li);
      }
      if (owns(plan_, 0, li)) {
        mine[li] = {cap.resid_pre, {cap.pattern, head_out, biases_.at(li)}};
        if (mlp_) mine[li].mlp_in = cap.mlp_in, mine[li].resid_mid = cap.resid_mid, mine[li].resid_post = cap.resid_post;
      }
    } else if (owns(plan_, comm_.rank(), li)) {
      const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device_);
      auto resid = torch::empty({n, d_model_}, options), pattern = torch::empty({n_heads_, n, n}, options),
           head_out = torch::empty({n_heads_, n, d_model_}, options);
      std::vector<torch::Tensor> mlp_tensors;
      std::vector<dist::RecvBuffer> buffers = {recv_buffer(resid), recv_buffer(pattern), recv_buffer(head_out)};
      if (mlp_) {
        for (int t = 0; t < 3; ++t) mlp_tensors.push_back(torch::empty({n, d_model_}, options));
        for (auto& t : mlp_tensors) buffers.push_back(recv_buffer(t));
      }
      transport_.recv(buffers, 0, li);
      LayerActivations a;
      if (mlp_) {
        a.mlp_in = mlp_tensors[0].to(compute_device_);
        a.resid_mid = mlp_tensors[1].to(compute_device_);
        a.resid_post = mlp_tensors[2].to(compute_device_);
      }
      // Onto the compute device: a no-op when NCCL delivered them to this rank's GPU.
      a.resid_pre = resid.to(compute_device_);
      a.parts.pattern = pattern.to(compute_device_);
      a.parts.head_out = head_out.to(compute_device_);
      a.parts.bias = biases_.at(li);
      mine[li] = std::move(a);
    }
  }
  return mine;
}

}  // namespace saetraj::pipeline
