#include "saetraj/output/index_file.h"

#include <exception>
#include <filesystem>
#include <new>

#include "saetraj/core/error.h"
#include "saetraj/output/h5.h"

namespace saetraj::output {

namespace {

template <typename T>
hid_t type_of();
template <> hid_t type_of<int8_t>() { return H5T_NATIVE_INT8; }
template <> hid_t type_of<int32_t>() { return H5T_NATIVE_INT32; }
template <> hid_t type_of<int64_t>() { return H5T_NATIVE_INT64; }
template <> hid_t type_of<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t type_of<double>() { return H5T_NATIVE_DOUBLE; }

// A contiguous dataset allocated at creation (parallel writers never allocate), without fill values: every
// element is written by the ranks afterwards.
template <typename T>
H5Handle create_allocated(hid_t file, const std::string& name, const std::vector<hsize_t>& dims,
                          const std::vector<std::string>& columns = {}) {
  const auto space = h5_space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), name);
  const auto dcpl = h5_plist(H5Pcreate(H5P_DATASET_CREATE), name);
  bool empty = false;
  for (hsize_t d : dims) empty |= d == 0;
  if (!empty) h5_check_status(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), name);
  h5_check_status(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), name);
  const auto lcpl = h5_plist(H5Pcreate(H5P_LINK_CREATE), name);
  H5Pset_create_intermediate_group(lcpl, 1);
  H5Handle ds = h5_dataset(H5Dcreate2(file, name.c_str(), type_of<T>(), space, lcpl, dcpl, H5P_DEFAULT), name);
  if (!columns.empty()) write_attr(ds, "columns", columns);
  return ds;
}

template <typename T>
void write_whole(hid_t file, const std::string& name, const std::vector<T>& values, const std::vector<hsize_t>& dims) {
  const auto ds = create_allocated<T>(file, name, dims);
  if (!values.empty()) {
    h5_check_status(H5Dwrite(ds, type_of<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), "writing " + name);
  }
}

template <typename T>
void write_column(hid_t file, const std::string& name, const std::vector<T>& values) {
  write_whole(file, name, values, {static_cast<hsize_t>(values.size())});
}

const MPI_Comm* mpi_comm_of(const dist::Communicator& comm) {
  return static_cast<const MPI_Comm*>(comm.mpi_comm_handle());
}

}  // namespace

void create_index_file(const std::string& path, const IndexHeader& h, bool overwrite) {
  namespace fs = std::filesystem;
  h5_quiet_errors();
  std::error_code ec;
  if (fs::exists(path, ec)) {
    SAETRAJ_CHECK(overwrite, InputError, "saetraj index: ", path,
                  " already exists; pass --overwrite to replace it, or choose another --out");
    fs::remove(path, ec);
    SAETRAJ_CHECK(!ec, IoError, "saetraj index: cannot replace ", path, ": ", ec.message());
  }
  const std::string what = "creating " + path;
  const auto file = h5_file(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), what);
  write_attr(file, "format", std::string(kIndexFormat));
  write_attr(file, "format_version", kIndexFormatVersion);
  write_attr(file, "model", h.model);
  write_attr(file, "architecture", h.architecture);
  write_attr(file, "layers", h.layers);
  write_attr(file, "k", h.k);
  write_attr(file, "sae_ids", h.sae_ids);
  write_attr(file, "top_t", h.top_t);
  write_attr(file, "graphs_group", h.graphs_group);
  write_attr(file, "sources", h.sources);
  write_attr(file, "created_utc", h.created_utc);
  write_attr(file, "command_line", h.command_line);

  const hsize_t P = h.prompt_source.size();
  write_column(file, "prompts/source", h.prompt_source);
  write_column(file, "prompts/index", h.prompt_index);
  write_strings(file, "prompts/id", h.prompt_id, {P});
  write_strings(file, "prompts/text", h.prompt_text, {P});
  write_column(file, "prompts/n_tokens", h.prompt_n_tokens);
  write_column(file, "prompts/token_offset", h.prompt_token_offset);
  write_column(file, "tokens/ids", h.token_ids);
  write_strings(file, "tokens/text", h.token_text, {static_cast<hsize_t>(h.token_text.size())});
  write_column(file, "vocab/id", h.vocab_id);
  write_strings(file, "vocab/text", h.vocab_text, {static_cast<hsize_t>(h.vocab_text.size())});

  const hsize_t F = h.feature_layer.size();
  write_column(file, "features/layer", h.feature_layer);
  write_column(file, "features/feature", h.feature_index);
  write_column(file, "features/start", h.feature_start);
  write_column(file, "features/count", h.feature_count);
  write_strings(file, "features/explanation", h.feature_explanation, {F});
  create_allocated<int32_t>(file, "features/prompts", {F});
  create_allocated<int64_t>(file, "features/traced", {F});
  for (const char* name : {"features/distance_mean", "features/distance_median", "features/final_position_mean",
                           "features/final_position_median"}) {
    create_allocated<double>(file, name, {F});
  }
  create_allocated<int32_t>(file, "features/top_sources", {F, static_cast<hsize_t>(kIndexTopSources)});
  create_allocated<int64_t>(file, "features/top_source_counts", {F, static_cast<hsize_t>(kIndexTopSources)});

  const hsize_t N = static_cast<hsize_t>(h.occurrences);
  for (const char* name : {"occurrences/prompt", "occurrences/length", "occurrences/source_token",
                           "occurrences/distance_back", "occurrences/final_position", "occurrences/source_id"}) {
    create_allocated<int32_t>(file, name, {N});
  }
  create_allocated<int8_t>(file, "occurrences/traced", {N});
  if (!h.head_column_names.empty()) {
    SAETRAJ_CHECK(h.head_column_names.size() >= 3, InputError, path, ": ", h.head_column_names.size(),
                  " head columns; expected jump, bias, unassigned and one per head");
    create_allocated<float>(file, "occurrences/heads", {N, h.head_column_names.size()}, h.head_column_names);
    create_allocated<double>(file, "features/head_share_mean", {F, h.head_column_names.size() - 3});
  }
  if (!h.order_column_names.empty()) {
    create_allocated<int32_t>(file, "occurrences/order", {N, h.order_column_names.size()}, h.order_column_names);
    create_allocated<float>(file, "occurrences/order_values", {N, h.order_value_column_names.size()},
                            h.order_value_column_names);
    create_allocated<double>(file, "features/loo_agree", {F});
    create_allocated<double>(file, "features/shapley_agree", {F});
  }
  h5_check_status(H5Fflush(file, H5F_SCOPE_GLOBAL), "flushing " + path);
}

struct ParallelIndexFile::Handles {
  H5Handle file, dxpl;
  H5Handle prompt, length, source_token, distance_back, final_position, source_id, traced, heads, order, order_values;
  H5Handle f_prompts, f_traced, f_distance_mean, f_distance_median, f_final_mean, f_final_median, f_top, f_top_counts,
      f_head_share, f_loo, f_shapley;
};

ParallelIndexFile::ParallelIndexFile(const std::string& path, const dist::Communicator& comm)
    : path_(path), comm_(comm), h_(std::make_unique<Handles>()) {
  h5_quiet_errors();
  H5Handle fapl = h5_plist(H5Pcreate(H5P_FILE_ACCESS), path + ": file access list");
  if (const MPI_Comm* c = mpi_comm_of(comm)) {
    h5_check_status(H5Pset_fapl_mpio(fapl, *c, MPI_INFO_NULL), path + ": MPI-IO file access");
    h5_check_status(H5Pset_all_coll_metadata_ops(fapl, true), path + ": collective metadata reads");
    h5_check_status(H5Pset_coll_metadata_write(fapl, true), path + ": collective metadata writes");
  }
  h_->file = h5_open_file(path, H5F_ACC_RDWR, fapl, "every rank must see the index file on a shared file system");
  h_->dxpl = h5_plist(H5Pcreate(H5P_DATASET_XFER), path + ": transfer list");
  if (mpi_comm_of(comm) != nullptr) {
    h5_check_status(H5Pset_dxpl_mpio(h_->dxpl, H5FD_MPIO_COLLECTIVE), path + ": collective transfer");
  }
  const auto open = [&](const char* name) {
    return h5_dataset(H5Dopen2(h_->file, name, H5P_DEFAULT), path + ": /" + name);
  };
  h_->prompt = open("occurrences/prompt");
  h_->length = open("occurrences/length");
  h_->source_token = open("occurrences/source_token");
  h_->distance_back = open("occurrences/distance_back");
  h_->final_position = open("occurrences/final_position");
  h_->source_id = open("occurrences/source_id");
  h_->traced = open("occurrences/traced");
  h_->f_prompts = open("features/prompts");
  h_->f_traced = open("features/traced");
  h_->f_distance_mean = open("features/distance_mean");
  h_->f_distance_median = open("features/distance_median");
  h_->f_final_mean = open("features/final_position_mean");
  h_->f_final_median = open("features/final_position_median");
  h_->f_top = open("features/top_sources");
  h_->f_top_counts = open("features/top_source_counts");
  const auto columns_of = [](hid_t ds) {
    const auto space = h5_space(H5Dget_space(ds), "index dataset");
    hsize_t dims[2] = {0, 0};
    H5Sget_simple_extent_dims(space, dims, nullptr);
    return static_cast<int64_t>(dims[1]);
  };
  if (link_exists(h_->file, "occurrences/heads")) {
    h_->heads = open("occurrences/heads");
    h_->f_head_share = open("features/head_share_mean");
    head_columns_ = columns_of(h_->heads);
    heads_ = head_columns_ - 3;
  }
  if (link_exists(h_->file, "occurrences/order")) {
    h_->order = open("occurrences/order");
    h_->order_values = open("occurrences/order_values");
    h_->f_loo = open("features/loo_agree");
    h_->f_shapley = open("features/shapley_agree");
    order_values_columns_ = columns_of(h_->order_values);
  }
}

// As for ParallelSweepFile: a rank that unwinds alone must not enter the collective close (main aborts).
ParallelIndexFile::~ParallelIndexFile() {
  if (std::uncaught_exceptions() > 0 && comm_.size() > 1) {
    for (H5Handle* h : {&h_->dxpl, &h_->prompt, &h_->length, &h_->source_token, &h_->distance_back,
                        &h_->final_position, &h_->source_id, &h_->traced, &h_->heads, &h_->order, &h_->order_values,
                        &h_->f_prompts, &h_->f_traced, &h_->f_distance_mean, &h_->f_distance_median,
                        &h_->f_final_mean, &h_->f_final_median, &h_->f_top, &h_->f_top_counts, &h_->f_head_share,
                        &h_->f_loo, &h_->f_shapley, &h_->file}) {
      new (h) H5Handle();
    }
    return;
  }
  close();
}

void ParallelIndexFile::close() {
  if (!h_) return;
  for (H5Handle* h : {&h_->dxpl, &h_->prompt, &h_->length, &h_->source_token, &h_->distance_back,
                      &h_->final_position, &h_->source_id, &h_->traced, &h_->heads, &h_->order, &h_->order_values,
                      &h_->f_prompts, &h_->f_traced, &h_->f_distance_mean, &h_->f_distance_median, &h_->f_final_mean,
                      &h_->f_final_median, &h_->f_top, &h_->f_top_counts, &h_->f_head_share, &h_->f_loo,
                      &h_->f_shapley, &h_->file}) {
    h->reset();
  }
  h_.reset();
}

namespace {

// One collective write of the rows of `runs` (each `width` values wide) from `data`, packed in run order.
template <typename T>
void write_runs(hid_t ds, hid_t dxpl, const std::vector<OccurrenceRun>& runs, int64_t width, const std::vector<T>& data,
                const std::string& what) {
  const auto fspace = h5_space(H5Dget_space(ds), what);
  h5_check_status(H5Sselect_none(fspace), what);
  int64_t total = 0;
  for (const auto& r : runs) {
    if (r.rows == 0) continue;
    const hsize_t start[2] = {static_cast<hsize_t>(r.file_row), 0};
    const hsize_t count[2] = {static_cast<hsize_t>(r.rows), static_cast<hsize_t>(width)};
    h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_OR, start, nullptr, count, nullptr), what);
    total += r.rows * width;
  }
  SAETRAJ_CHECK(static_cast<int64_t>(data.size()) == total, InputError, what, ": ", data.size(), " values for ",
                total);
  const hsize_t n = static_cast<hsize_t>(std::max<int64_t>(total, 1));
  const auto mspace = h5_space(H5Screate_simple(1, &n, nullptr), what);
  if (total == 0) h5_check_status(H5Sselect_none(mspace), what);
  h5_check_status(H5Dwrite(ds, type_of<T>(), mspace, fspace, dxpl, total == 0 ? nullptr : data.data()), what);
}

template <typename T>
std::vector<T> read_rows(hid_t ds, int64_t begin, int64_t rows, int64_t width, const std::string& what) {
  std::vector<T> out(static_cast<size_t>(rows * width));
  if (out.empty()) return out;
  const auto fspace = h5_space(H5Dget_space(ds), what);
  const hsize_t start[2] = {static_cast<hsize_t>(begin), 0};
  const hsize_t count[2] = {static_cast<hsize_t>(rows), static_cast<hsize_t>(width)};
  h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr), what);
  const hsize_t n = out.size();
  const auto mspace = h5_space(H5Screate_simple(1, &n, nullptr), what);
  h5_check_status(H5Dread(ds, type_of<T>(), mspace, fspace, H5P_DEFAULT, out.data()), what);
  return out;
}

}  // namespace

void ParallelIndexFile::write_occurrences(const std::vector<OccurrenceRun>& runs, const OccurrenceColumns& c) {
  const std::string what = "writing /occurrences of " + path_;
  write_runs(h_->prompt, h_->dxpl, runs, 1, c.prompt, what);
  write_runs(h_->length, h_->dxpl, runs, 1, c.length, what);
  write_runs(h_->source_token, h_->dxpl, runs, 1, c.source_token, what);
  write_runs(h_->distance_back, h_->dxpl, runs, 1, c.distance_back, what);
  write_runs(h_->final_position, h_->dxpl, runs, 1, c.final_position, what);
  write_runs(h_->source_id, h_->dxpl, runs, 1, c.source_id, what);
  write_runs(h_->traced, h_->dxpl, runs, 1, c.traced, what);
  if (h_->heads.valid()) write_runs(h_->heads, h_->dxpl, runs, head_columns_, c.heads, what);
  if (h_->order.valid()) {
    write_runs(h_->order, h_->dxpl, runs, 4, c.order, what);
    write_runs(h_->order_values, h_->dxpl, runs, order_values_columns_, c.order_values, what);
  }
}

OccurrenceColumns ParallelIndexFile::read_occurrences(int64_t begin, int64_t rows) const {
  const std::string what = "reading /occurrences of " + path_;
  OccurrenceColumns c;
  c.prompt = read_rows<int32_t>(h_->prompt, begin, rows, 1, what);
  c.length = read_rows<int32_t>(h_->length, begin, rows, 1, what);
  c.source_token = read_rows<int32_t>(h_->source_token, begin, rows, 1, what);
  c.distance_back = read_rows<int32_t>(h_->distance_back, begin, rows, 1, what);
  c.final_position = read_rows<int32_t>(h_->final_position, begin, rows, 1, what);
  c.source_id = read_rows<int32_t>(h_->source_id, begin, rows, 1, what);
  c.traced = read_rows<int8_t>(h_->traced, begin, rows, 1, what);
  if (h_->heads.valid()) c.heads = read_rows<float>(h_->heads, begin, rows, head_columns_, what);
  if (h_->order.valid()) {
    c.order = read_rows<int32_t>(h_->order, begin, rows, 4, what);
    c.order_values = read_rows<float>(h_->order_values, begin, rows, order_values_columns_, what);
  }
  return c;
}

void ParallelIndexFile::write_features(int64_t begin, const FeatureAggregates& a) {
  const std::string what = "writing /features of " + path_;
  const std::vector<OccurrenceRun> runs = {{begin, a.rows()}};
  write_runs(h_->f_prompts, h_->dxpl, runs, 1, a.prompts, what);
  write_runs(h_->f_traced, h_->dxpl, runs, 1, a.traced, what);
  write_runs(h_->f_distance_mean, h_->dxpl, runs, 1, a.distance_mean, what);
  write_runs(h_->f_distance_median, h_->dxpl, runs, 1, a.distance_median, what);
  write_runs(h_->f_final_mean, h_->dxpl, runs, 1, a.final_position_mean, what);
  write_runs(h_->f_final_median, h_->dxpl, runs, 1, a.final_position_median, what);
  write_runs(h_->f_top, h_->dxpl, runs, kIndexTopSources, a.top_sources, what);
  write_runs(h_->f_top_counts, h_->dxpl, runs, kIndexTopSources, a.top_source_counts, what);
  if (h_->f_head_share.valid()) write_runs(h_->f_head_share, h_->dxpl, runs, heads_, a.head_share_mean, what);
  if (h_->f_loo.valid()) {
    write_runs(h_->f_loo, h_->dxpl, runs, 1, a.loo_agree, what);
    write_runs(h_->f_shapley, h_->dxpl, runs, 1, a.shapley_agree, what);
  }
}

}  // namespace saetraj::output
