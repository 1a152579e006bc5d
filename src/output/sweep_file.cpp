#include "saetraj/output/sweep_file.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <exception>
#include <limits>
#include <new>
#include <filesystem>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_file_h5.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::output {

int64_t SweepHeader::total_rows() const {
  int64_t total = 0;
  for (const auto& p : prompts) total += sweep::rows_of_prompt(static_cast<int64_t>(p.ids.size()));
  return total;
}

std::vector<int64_t> SweepHeader::row_offsets() const {
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (const auto& p : prompts) {
    offsets.push_back(total);
    total += sweep::rows_of_prompt(static_cast<int64_t>(p.ids.size()));
  }
  return offsets;
}

int64_t SweepHeader::total_queries() const {
  int64_t total = 0;
  for (const auto& p : prompts) total += std::max<int64_t>(0, static_cast<int64_t>(p.ids.size()) - 1);
  return total;
}

std::vector<int64_t> SweepHeader::query_offsets() const {
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (const auto& p : prompts) {
    offsets.push_back(total);
    total += std::max<int64_t>(0, static_cast<int64_t>(p.ids.size()) - 1);
  }
  return offsets;
}

std::string storage_failure(const std::string& path, int err) {
  std::string cause = err != 0 ? std::strerror(err) : "the HDF5 library reported a failed write";
  const auto folder = std::filesystem::absolute(path).parent_path();
  struct statvfs fs {};
  if (::statvfs(folder.c_str(), &fs) == 0) {
    const double free_bytes = static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize);
    const double total_bytes = static_cast<double>(fs.f_blocks) * static_cast<double>(fs.f_frsize);
    cause += str("; the file system holding ", folder.string(), " has ", human_bytes(free_bytes), " free of ",
                 human_bytes(total_bytes));
  }
  return cause;
}

std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {

// A chunked dataset with a fill value, allocated at creation so parallel writers never allocate.
template <typename T>
void create_filled(hid_t file, const std::string& name, const std::vector<hsize_t>& dims,
                   const std::vector<hsize_t>& chunk, T fill) {
  const auto space = h5_space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), name);
  const auto dcpl = h5_plist(H5Pcreate(H5P_DATASET_CREATE), name);
  bool empty = false;
  for (hsize_t d : dims) empty |= d == 0;
  if (!empty) {
    h5_check_status(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), name);
    h5_check_status(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), name);
  }
  h5_check_status(H5Pset_fill_value(dcpl, native_type<T>(), &fill), name);
  h5_check_status(H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC), name);
  const auto lcpl = h5_plist(H5Pcreate(H5P_LINK_CREATE), name);
  H5Pset_create_intermediate_group(lcpl, 1);
  h5_dataset(H5Dcreate2(file, name.c_str(), native_type<T>(), space, lcpl, dcpl, H5P_DEFAULT), name);
}

void create_empty_strings(hid_t file, const std::string& name, const std::vector<hsize_t>& dims) {
  const auto type = vlen_utf8_type();
  const auto space = h5_space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), name);
  const auto lcpl = h5_plist(H5Pcreate(H5P_LINK_CREATE), name);
  H5Pset_create_intermediate_group(lcpl, 1);
  h5_dataset(H5Dcreate2(file, name.c_str(), type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT), name);
}

H5Handle open_serial(const std::string& path, unsigned flags) {
  return open_sweep_file(path, flags == H5F_ACC_RDWR, "give a sweep file written by saetraj sweep");
}

}  // namespace

H5Handle open_sweep_file(const std::string& path, bool writable, const std::string& advice) {
  H5Handle f = h5_open_file(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT, advice);
  SAETRAJ_CHECK(has_attr(f, "format") && read_attr_string(f, "format") == kSweepFormat, FormatError, path,
                " is an HDF5 file but not a saetraj sweep file (no root attribute format = \"", kSweepFormat,
                "\"); ", advice);
  SAETRAJ_CHECK(has_attr(f, "format_version"), FormatError, path, " has no format_version; ", advice);
  {
    const auto attr = h5_attr(H5Aopen(f, "format_version", H5P_DEFAULT), path + ": attribute format_version");
    const auto type = h5_type(H5Aget_type(attr), path + ": attribute format_version");
    SAETRAJ_CHECK(H5Tget_class(type) == H5T_INTEGER, FormatError, path,
                  ": attribute 'format_version' of the root is not an integer; ", advice);
  }
  const int64_t version = read_attr_int(f, "format_version");
  SAETRAJ_CHECK(version >= kOldestReadableSweepVersion && version <= kNewestReadableSweepVersion, FormatError, path,
                " has format_version ", version, "; this saetraj reads versions ", kOldestReadableSweepVersion,
                " to ", kNewestReadableSweepVersion);
  SAETRAJ_CHECK(version >= kSweepFormatVersionMlp || !link_exists(f, "mlp"), FormatError, path,
                " has a group /mlp but format_version ", version, "; /mlp exists from version ", kSweepFormatVersionMlp,
                " on (the file is damaged or was not written by saetraj sweep)");
  return f;
}

namespace {

// A failed data write, as a full disk (or a quota, or a failing device) makes it: says why, how much room
// is left, and that the prompts already marked done are kept for --resume.
[[noreturn]] void throw_write_failure(const std::string& what, const std::string& path, int err) {
  throw IoError(str(what, " failed: ", storage_failure(path, err),
                    ". Every prompt marked done in the file is complete and kept: free space (or move the file to "
                    "a larger file system and point --out at it), then run the same command with --resume"));
}

// [NOTE] Free space is checked before writing. HDF5 (1.10) does not survive a full disk in the middle of
// a metadata write: the file can be left unwritable and the library can crash at exit. So the two steps
// that grow the file (creating it with the evolution tables reserved, and the readout strings at the end)
// first compare what they need, with a margin, against the space left, and refuse cleanly.
void check_free_space(const std::string& path, double needed_bytes, const std::string& step,
                      const std::string& then) {
  const auto folder = std::filesystem::absolute(path).parent_path();
  struct statvfs fs {};
  // Nothing to compare with (no statvfs, or a pseudo file system such as /proc with no blocks at all):
  // let the writes tell.
  if (::statvfs(folder.c_str(), &fs) != 0 || fs.f_blocks == 0) return;
  const double free_bytes = static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize);
  const double needed = needed_bytes + (1 << 20);
  SAETRAJ_CHECK(free_bytes >= needed, IoError, step, " needs about ", human_bytes(needed), ", but the file system "
                "holding ", folder.string(), " has ", human_bytes(free_bytes), " free: the disk is (nearly) full. ",
                then);
}

// /heads (NOTE Format versions in sweep_file.h), filled with NaN: a slot without a newcomer stays NaN.
void create_heads(hid_t file, const SweepHeader& h) {
  const hsize_t slots = static_cast<hsize_t>(h.head_slots), columns = static_cast<hsize_t>(h.heads + 3);
  const hsize_t queries = static_cast<hsize_t>(h.total_queries());
  write_vector(file, "heads/query_offset", h.query_offsets());
  const hsize_t per_query = slots * columns;
  const hsize_t chunk_queries = std::max<hsize_t>(1, std::min<hsize_t>(std::max<hsize_t>(1, queries), (1u << 18) / per_query));
  create_filled<float>(file, "heads/split",
                       {static_cast<hsize_t>(h.layers.size()), queries, slots, columns},
                       {1, chunk_queries, slots, columns}, std::numeric_limits<float>::quiet_NaN());
  const auto group = h5_group(H5Gopen2(file, "heads", H5P_DEFAULT), "/heads");
  write_attr(group, "slots", h.head_slots);
  write_attr(group, "heads", h.heads);
  std::vector<std::string> names = {"jump", "bias", "unassigned"};
  for (int64_t i = 0; i < h.heads; ++i) names.push_back("head " + std::to_string(i));
  write_attr(group, "columns", names);
}

// /mlp (NOTE The MLP path in sweep_file.h), filled so that an unwritten query reads as "no step, empty lists".
void create_mlp(hid_t file, const SweepHeader& h) {
  const hsize_t layers = static_cast<hsize_t>(h.layers.size()), queries = static_cast<hsize_t>(h.total_queries());
  const hsize_t k = static_cast<hsize_t>(h.k), c = static_cast<hsize_t>(kMlpSlotColumns);
  const hsize_t chunk = std::max<hsize_t>(1, std::min<hsize_t>(std::max<hsize_t>(1, queries), (1u << 18) / (k * c)));
  create_filled<int32_t>(file, "mlp/steps", {layers, queries}, {1, std::max<hsize_t>(1, queries)}, 0);
  create_filled<int32_t>(file, "mlp/final_indices", {layers, queries, k}, {1, chunk, k}, -1);
  create_filled<float>(file, "mlp/final_values", {layers, queries, k}, {1, chunk, k}, 0.0f);
  create_filled<int32_t>(file, "mlp/slots", {layers, queries, k, c}, {1, chunk, k, c}, -1);
  create_filled<float>(file, "mlp/activation", {layers, queries, k}, {1, chunk, k},
                       std::numeric_limits<float>::quiet_NaN());
  const auto group = h5_group(H5Gopen2(file, "mlp", H5P_DEFAULT), "/mlp");
  write_attr(group, "transcoder_ids", h.mlp_transcoder_ids);
  write_attr(group, "transcoder_hooks", h.mlp_transcoder_hooks);
  write_attr(group, "transcoder_hooks_out", h.mlp_transcoder_hooks_out);
  write_attr(group, "kinds", std::vector<std::string>{"feature", "bias", "skip", "error"});
}

// Everything create_sweep_file writes into the freshly created `file`.
void write_new_sweep_file(hid_t file, const std::string& path, const SweepHeader& h) {
  const int64_t n_layers = static_cast<int64_t>(h.layers.size());
  const int64_t n_prompts = static_cast<int64_t>(h.prompts.size());
  const int64_t total_rows = h.total_rows();

  write_attr(file, "format", std::string(kSweepFormat));
  write_attr(file, "format_version", h.has_mlp() ? kSweepFormatVersionMlp : kSweepFormatVersion);
  write_attr(file, "model", h.model);
  write_attr(file, "architecture", h.architecture);
  write_attr(file, "d_model", h.d_model);
  write_attr(file, "n_model_layers", h.n_model_layers);
  write_attr(file, "layers", h.layers);
  write_attr(file, "k", h.k);
  write_attr(file, "sae_ids", h.sae_ids);
  write_attr(file, "sae_hooks", h.sae_hooks);
  write_attr(file, "sae_preprocessing", h.sae_preprocessing);
  write_attr(file, "bos", h.bos);
  write_attr(file, "complete", int64_t{0});
  write_attr(file, "created_utc", h.created_utc);
  write_attr(file, "command_line", h.command_line);
  write_attr(file, "config", h.config_json);

  // Prompts and tokens.
  std::vector<std::string> texts, ids, token_text;
  std::vector<int32_t> n_tokens, token_ids;
  std::vector<int64_t> token_offset;
  for (const auto& p : h.prompts) {
    texts.push_back(p.text);
    ids.push_back(p.id);
    n_tokens.push_back(static_cast<int32_t>(p.ids.size()));
    token_offset.push_back(static_cast<int64_t>(token_ids.size()));
    token_ids.insert(token_ids.end(), p.ids.begin(), p.ids.end());
    token_text.insert(token_text.end(), p.tokens.begin(), p.tokens.end());
  }
  write_strings(file, "prompts/text", texts, {static_cast<hsize_t>(n_prompts)});
  write_strings(file, "prompts/id", ids, {static_cast<hsize_t>(n_prompts)});
  write_vector(file, "prompts/n_tokens", n_tokens);
  write_vector(file, "prompts/token_offset", token_offset);
  write_vector(file, "prompts/row_offset", h.row_offsets());
  create_filled<uint8_t>(file, "prompts/done", {static_cast<hsize_t>(n_prompts)},
                         {static_cast<hsize_t>(std::max<int64_t>(1, n_prompts))}, 0);
  write_vector(file, "tokens/ids", token_ids);
  write_strings(file, "tokens/text", token_text, {static_cast<hsize_t>(token_text.size())});

  // Skipped prompts, never silently dropped.
  std::vector<int64_t> skipped_line;
  std::vector<std::string> skipped_id, skipped_text, skipped_reason;
  for (const auto& s : h.skipped) {
    skipped_line.push_back(s.line);
    skipped_id.push_back(s.id);
    skipped_text.push_back(s.text);
    skipped_reason.push_back(s.reason);
  }
  write_vector(file, "skipped/line", skipped_line);
  write_strings(file, "skipped/id", skipped_id, {static_cast<hsize_t>(skipped_id.size())});
  write_strings(file, "skipped/text", skipped_text, {static_cast<hsize_t>(skipped_text.size())});
  write_strings(file, "skipped/reason", skipped_reason, {static_cast<hsize_t>(skipped_reason.size())});

  // Row index.
  std::vector<int32_t> row_query, row_step;
  row_query.reserve(total_rows);
  row_step.reserve(total_rows);
  for (const auto& p : h.prompts) {
    const int64_t n = static_cast<int64_t>(p.ids.size());
    for (int64_t q = 1; q < n; ++q) {
      for (int64_t s = 0; s < sweep::steps_of_query(q); ++s) {
        row_query.push_back(static_cast<int32_t>(q));
        row_step.push_back(static_cast<int32_t>(s));
      }
    }
  }
  write_vector(file, "evolution/row_query", row_query);
  write_vector(file, "evolution/row_step", row_step);

  // Chunks of about 1 MiB along rows: one prompt of all layers reads a few chunks per layer.
  const hsize_t k = static_cast<hsize_t>(h.k);
  const hsize_t chunk_rows = std::max<hsize_t>(1, std::min<hsize_t>(std::max<int64_t>(1, total_rows), (1u << 18) / k));
  const std::vector<hsize_t> evo_dims = {static_cast<hsize_t>(n_layers), static_cast<hsize_t>(total_rows), k};
  create_filled<int32_t>(file, "evolution/indices", evo_dims, {1, chunk_rows, k}, -1);
  create_filled<float>(file, "evolution/values", evo_dims, {1, chunk_rows, k}, 0.0f);

  const std::vector<hsize_t> readout_dims = {static_cast<hsize_t>(n_prompts), static_cast<hsize_t>(n_layers),
                                             static_cast<hsize_t>(kReadoutTop)};
  const std::vector<hsize_t> readout_chunk = {1, static_cast<hsize_t>(std::max<int64_t>(1, n_layers)),
                                              static_cast<hsize_t>(kReadoutTop)};
  create_filled<int32_t>(file, "readout/token_ids", readout_dims, readout_chunk, -1);
  create_filled<float>(file, "readout/probs", readout_dims, readout_chunk, 0.0f);
  create_empty_strings(file, "readout/token_text", readout_dims);
  if (h.head_slots > 0) create_heads(file, h);
  if (h.order_slots > 0) {
    const hsize_t width = static_cast<hsize_t>(h.order_slots * 3);
    const hsize_t rows_per_chunk = std::max<hsize_t>(1, std::min<hsize_t>(std::max<int64_t>(1, total_rows), (1u << 18) / width));
    create_filled<float>(file, "order/values", {static_cast<hsize_t>(n_layers), static_cast<hsize_t>(total_rows), width},
                         {1, rows_per_chunk, width}, std::numeric_limits<float>::quiet_NaN());
    const auto group = h5_group(H5Gopen2(file, "order", H5P_DEFAULT), "/order");
    write_attr(group, "slots", h.order_slots);
    write_attr(group, "orders", h.orders);
    write_attr(group, "seed", h.order_seed);
  }
  if (h.has_mlp()) create_mlp(file, h);
  h5_check_status(H5Fflush(file, H5F_SCOPE_GLOBAL), "flushing " + path);
}

}  // namespace

void create_sweep_file(const std::string& path, const SweepHeader& h, bool overwrite) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(path, ec)) {
    SAETRAJ_CHECK(overwrite, InputError, "output file ", path,
                  " already exists; pass --resume to continue it or --overwrite to replace it");
    fs::remove(path, ec);
    SAETRAJ_CHECK(!ec, IoError, "cannot replace ", path, ": ", ec.message(), "; remove it or choose another --out");
  }
  const auto parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    SAETRAJ_CHECK(!ec, IoError, "cannot create the folder ", parent.string(), " for the output file: ", ec.message(),
                  "; choose an --out whose folder can be created and written");
  }
  double tokens = 0, text_bytes = 0;
  for (const auto& p : h.prompts) {
    tokens += static_cast<double>(p.ids.size());
    text_bytes += static_cast<double>(p.text.size() + p.id.size());
  }
  const double layers = static_cast<double>(h.layers.size());
  check_free_space(path,
                   layers * static_cast<double>(h.total_rows()) * static_cast<double>(h.k) * 8 +
                       static_cast<double>(h.prompts.size()) * layers * kReadoutTop * 8 + tokens * 72 + text_bytes * 2 +
                       layers * static_cast<double>(h.total_queries() * h.head_slots * (h.heads + 3)) * 4 +
                       (h.has_mlp() ? layers * static_cast<double>(h.total_queries()) * static_cast<double>(4 + 24 * h.k) : 0.0),
                   "the sweep file " + path + " (its evolution tables are reserved at creation)",
                   "Free space or choose an --out on another file system, then run the same command again.");
  h5_quiet_errors();
  errno = 0;
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
  SAETRAJ_CHECK(id >= 0, IoError, "cannot create the output file ", path, ": ", storage_failure(path, errno),
                "; choose an --out in a writable folder with free space");
  H5Handle file(id, H5Fclose);
  try {
    write_new_sweep_file(file, path, h);
  } catch (Error& e) {
    // Nothing is computed yet: a half-written file would only stand in the way of the next attempt.
    const int err = errno;
    file.reset();
    fs::remove(path, ec);
    e.add_context(str("cannot write the new sweep file ", path, " (", storage_failure(path, err),
                      "); the partial file was removed: free space or choose an --out on another file system, "
                      "then run the same command again"));
    throw;
  }
}

void check_resumable(const std::string& path, const SweepHeader& h) {
  const H5Handle f = open_sweep_file(path, false,
                                     "--resume continues a sweep file: pass --overwrite instead to replace it, or "
                                     "choose another --out");
  auto differs = [&](const std::string& what, const std::string& in_file, const std::string& now) {
    throw InputError(str("cannot resume ", path, ": its ", what, " (", in_file, ") differs from this run's (", now,
                         "); use another --out or --overwrite"));
  };
  if (read_attr_string(f, "model") != h.model) differs("model", read_attr_string(f, "model"), h.model);
  if (read_attr_int(f, "k") != h.k) differs("k", std::to_string(read_attr_int(f, "k")), std::to_string(h.k));
  if (read_attr_ints(f, "layers") != h.layers) differs("layer list", "...", "...");
  if (read_attr_strings(f, "sae_ids") != h.sae_ids) differs("SAE ids", "...", "...");
  const auto texts = read_strings(f, "prompts/text");
  const auto n_tokens = read_vector<int32_t>(f, "prompts/n_tokens");
  SAETRAJ_CHECK(texts.size() == h.prompts.size(), InputError, "cannot resume ", path, ": it holds ", texts.size(),
                " prompts, this run has ", h.prompts.size());
  const auto ids = read_vector<int32_t>(f, "tokens/ids");
  std::vector<int32_t> now_ids;
  for (size_t p = 0; p < texts.size(); ++p) {
    if (texts[p] != h.prompts[p].text || n_tokens[p] != static_cast<int32_t>(h.prompts[p].ids.size())) {
      throw InputError(str("cannot resume ", path, ": prompt ", p, " differs from this run's"));
    }
    now_ids.insert(now_ids.end(), h.prompts[p].ids.begin(), h.prompts[p].ids.end());
  }
  SAETRAJ_CHECK(ids == now_ids, InputError, "cannot resume ", path, ": the token ids differ from this run's");
  const int64_t slots = link_exists(f, "heads") ? read_attr_int(h5_group(H5Gopen2(f, "heads", H5P_DEFAULT), "/heads"), "slots") : 0;
  const int64_t orders = link_exists(f, "order") ? read_attr_int(h5_group(H5Gopen2(f, "order", H5P_DEFAULT), "/order"), "orders") : 0;
  if (orders != h.orders) differs("order-free views (--orders)", std::to_string(orders), std::to_string(h.orders));
  if (slots != h.head_slots) {
    differs("head split (--heads, --top-t)", slots ? str(slots, " slots") : "none",
            h.head_slots ? str(h.head_slots, " slots") : "none");
  }
  const auto transcoders =
      link_exists(f, "mlp") ? read_attr_strings(h5_group(H5Gopen2(f, "mlp", H5P_DEFAULT), "/mlp"), "transcoder_ids")
                            : std::vector<std::string>{};
  if (transcoders != h.mlp_transcoder_ids) {
    differs("MLP transcoders (--mlp-transcoder)", transcoders.empty() ? "none" : join(transcoders, ", "),
            h.mlp_transcoder_ids.empty() ? "none" : join(h.mlp_transcoder_ids, ", "));
  }
}

std::vector<uint8_t> read_done_flags(const std::string& path) {
  const H5Handle f = open_serial(path, H5F_ACC_RDONLY);
  return read_vector<uint8_t>(f, "prompts/done");
}

namespace {

// [NOTE] The seam between dist/ and output/. Parallel HDF5 needs the MPI communicator itself; dist/ hands
// out only its address (Communicator::mpi_comm_handle), and this file passes it on to HDF5 without any
// MPI call of its own (<mpi.h> comes in through parallel HDF5's <hdf5.h>). A serial communicator has none:
// the file is then opened with HDF5's default (serial) driver and plain transfer lists.
const MPI_Comm* mpi_comm_of(const dist::Communicator& comm) {
  return static_cast<const MPI_Comm*>(comm.mpi_comm_handle());
}

// One file opened by all ranks, with collective metadata operations.
H5Handle file_access(const dist::Communicator& comm, const std::string& path) {
  H5Handle fapl = h5_plist(H5Pcreate(H5P_FILE_ACCESS), path + ": file access list");
  if (const MPI_Comm* c = mpi_comm_of(comm)) {
    h5_check_status(H5Pset_fapl_mpio(fapl, *c, MPI_INFO_NULL), path + ": MPI-IO file access");
    h5_check_status(H5Pset_all_coll_metadata_ops(fapl, true), path + ": collective metadata reads");
    h5_check_status(H5Pset_coll_metadata_write(fapl, true), path + ": collective metadata writes");
  }
  return fapl;
}

// Collective raw-data transfers; `individual` lets each rank's data go to the file directly within the
// collective call (NOTE Why the evolution rows skip collective buffering).
H5Handle transfer(const dist::Communicator& comm, bool individual, const std::string& path) {
  H5Handle dxpl = h5_plist(H5Pcreate(H5P_DATASET_XFER), path + ": transfer list");
  if (mpi_comm_of(comm) != nullptr) {
    h5_check_status(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), path + ": collective transfer");
    if (individual) {
      h5_check_status(H5Pset_dxpl_mpio_collective_opt(dxpl, H5FD_MPIO_INDIVIDUAL_IO), path + ": individual I/O");
    }
  }
  return dxpl;
}

}  // namespace

// [NOTE] Why the evolution rows skip collective buffering. Each rank writes whole blocks of rows x k
// (megabytes, contiguous within each chunk row), disjoint from every other rank's. Two-phase collective
// I/O would first ship every rank's block to the aggregator ranks, which then write it: a copy through
// MPI and serialised writing on the aggregators, for blocks that are already large and contiguous.
// Individual I/O under the collective call lets each rank write its own; measured on the scaling
// benchmark (2 ranks), rank 0's write time fell from 1.0-1.6 s to 0.8 s.
struct ParallelSweepFile::Handles {
  H5Handle file, heads, order, indices, values, readout_ids, readout_probs, done, dxpl, bulk_dxpl;
  H5Handle mlp_steps, mlp_indices, mlp_values, mlp_slots, mlp_activation;
};

ParallelSweepFile::ParallelSweepFile(const std::string& path, const dist::Communicator& comm)
    : path_(path), comm_(comm), h_(std::make_unique<Handles>()) {
  const H5Handle fapl = file_access(comm, path);
  h_->file = h5_open_file(path, H5F_ACC_RDWR, fapl, "every rank must see the sweep file on a shared file system");
  k_ = read_attr_int(h_->file, "k");
  n_layers_ = static_cast<int64_t>(read_attr_ints(h_->file, "layers").size());
  h_->indices = h5_dataset(H5Dopen2(h_->file, "evolution/indices", H5P_DEFAULT), "evolution/indices");
  h_->values = h5_dataset(H5Dopen2(h_->file, "evolution/values", H5P_DEFAULT), "evolution/values");
  h_->readout_ids = h5_dataset(H5Dopen2(h_->file, "readout/token_ids", H5P_DEFAULT), "readout/token_ids");
  h_->readout_probs = h5_dataset(H5Dopen2(h_->file, "readout/probs", H5P_DEFAULT), "readout/probs");
  h_->done = h5_dataset(H5Dopen2(h_->file, "prompts/done", H5P_DEFAULT), "prompts/done");
  if (link_exists(h_->file, "heads")) {
    const auto group = h5_group(H5Gopen2(h_->file, "heads", H5P_DEFAULT), "/heads");
    head_slots_ = read_attr_int(group, "slots");
    head_columns_ = read_attr_int(group, "heads") + 3;
    h_->heads = h5_dataset(H5Dopen2(h_->file, "heads/split", H5P_DEFAULT), "heads/split");
  }
  if (link_exists(h_->file, "order")) {
    order_width_ = 3 * read_attr_int(h5_group(H5Gopen2(h_->file, "order", H5P_DEFAULT), "/order"), "slots");
    h_->order = h5_dataset(H5Dopen2(h_->file, "order/values", H5P_DEFAULT), "order/values");
  }
  if (link_exists(h_->file, "mlp")) {
    has_mlp_ = true;
    const auto open = [&](const char* name) { return h5_dataset(H5Dopen2(h_->file, name, H5P_DEFAULT), name); };
    h_->mlp_steps = open("mlp/steps");
    h_->mlp_indices = open("mlp/final_indices");
    h_->mlp_values = open("mlp/final_values");
    h_->mlp_slots = open("mlp/slots");
    h_->mlp_activation = open("mlp/activation");
  }
  h_->dxpl = transfer(comm, false, path);
  h_->bulk_dxpl = transfer(comm, true, path);
}

// [NOTE] Closing a parallel HDF5 file is collective. An error that unwinds through one rank only (a failed
// write, a NaN in one layer) leaves the other ranks inside a collective write; closing would wait for them
// forever. So a rank that unwinds with others beside it lets the handles go: main() prints the error and
// MPI_Abort ends every rank, and the done flags flushed so far keep the file readable and resumable.
ParallelSweepFile::~ParallelSweepFile() {
  if (std::uncaught_exceptions() > 0 && comm_.size() > 1) {
    // A fresh empty handle built over each one ends it without running its closing destructor.
    for (H5Handle* h : {&h_->bulk_dxpl, &h_->dxpl, &h_->done, &h_->readout_probs, &h_->readout_ids, &h_->values,
                        &h_->indices, &h_->heads, &h_->order, &h_->mlp_steps, &h_->mlp_indices, &h_->mlp_values,
                        &h_->mlp_slots, &h_->mlp_activation, &h_->file}) {
      new (h) H5Handle();
    }
    return;
  }
  close();
}

void ParallelSweepFile::close() {
  if (!h_) return;
  h_->bulk_dxpl.reset();
  h_->dxpl.reset();
  h_->done.reset();
  h_->readout_probs.reset();
  h_->readout_ids.reset();
  h_->values.reset();
  h_->indices.reset();
  h_->heads.reset();
  h_->order.reset();
  h_->mlp_steps.reset();
  h_->mlp_indices.reset();
  h_->mlp_values.reset();
  h_->mlp_slots.reset();
  h_->mlp_activation.reset();
  h_->file.reset();
}

namespace {

// One collective write of rows x k blocks. The elements of a union of hyperslabs are transferred in file
// order, so slabs are sorted and packed in that order.
template <typename T>
void write_blocks(hid_t dataset, hid_t dxpl, const std::vector<EvolutionSlab>& slabs, int64_t k,
                  const T* (*data_of)(const EvolutionSlab&), const std::string& what, const std::string& path,
                  int injected_errno) {
  const auto fspace = h5_space(H5Dget_space(dataset), what);
  h5_check_status(H5Sselect_none(fspace), what);
  int64_t total = 0;
  for (const auto& s : slabs) total += s.rows * k;
  std::vector<T> packed;
  const T* buffer = nullptr;
  if (slabs.size() == 1) {
    buffer = data_of(slabs[0]);
  } else if (!slabs.empty()) {
    packed.reserve(total);
    for (const auto& s : slabs) packed.insert(packed.end(), data_of(s), data_of(s) + s.rows * k);
    buffer = packed.data();
  }
  for (const auto& s : slabs) {
    if (s.rows == 0) continue;
    const hsize_t start[3] = {static_cast<hsize_t>(s.layer_index), static_cast<hsize_t>(s.row_begin), 0};
    const hsize_t count[3] = {1, static_cast<hsize_t>(s.rows), static_cast<hsize_t>(k)};
    h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_OR, start, nullptr, count, nullptr), what);
  }
  // A single slab is described in memory by the shape of its file block, which lets HDF5 map it onto the
  // chunks block by block instead of element run by element run.
  const hsize_t mem_dims = static_cast<hsize_t>(std::max<int64_t>(total, 1));
  const hsize_t block_dims[3] = {1, slabs.size() == 1 ? static_cast<hsize_t>(slabs[0].rows) : 0,
                                 static_cast<hsize_t>(k)};
  const auto mspace = h5_space(slabs.size() == 1 && slabs[0].rows > 0 ? H5Screate_simple(3, block_dims, nullptr)
                                                                      : H5Screate_simple(1, &mem_dims, nullptr),
                               what);
  if (total == 0) h5_check_status(H5Sselect_none(mspace), what);
  errno = 0;
  const herr_t status = injected_errno != 0 ? -1 : H5Dwrite(dataset, native_type<T>(), mspace, fspace, dxpl, buffer);
  if (status < 0) throw_write_failure(what, path, injected_errno != 0 ? injected_errno : errno);
}

}  // namespace

void ParallelSweepFile::write_evolution(std::vector<EvolutionSlab> slabs) {
  std::sort(slabs.begin(), slabs.end(), [](const EvolutionSlab& a, const EvolutionSlab& b) {
    return std::tie(a.layer_index, a.row_begin) < std::tie(b.layer_index, b.row_begin);
  });
  write_blocks<int32_t>(h_->indices, h_->bulk_dxpl, slabs, k_, [](const EvolutionSlab& s) { return s.indices; },
                        "writing evolution/indices of " + path_, path_, injected_errno_);
  write_blocks<float>(h_->values, h_->bulk_dxpl, slabs, k_, [](const EvolutionSlab& s) { return s.values; },
                      "writing evolution/values of " + path_, path_, injected_errno_);
}

void ParallelSweepFile::write_order(std::vector<EvolutionSlab> slabs) {
  SAETRAJ_CHECK(h_->order.valid(), InputError, path_, " has no /order (the sweep ran without --orders)");
  std::sort(slabs.begin(), slabs.end(), [](const EvolutionSlab& a, const EvolutionSlab& b) {
    return std::tie(a.layer_index, a.row_begin) < std::tie(b.layer_index, b.row_begin);
  });
  write_blocks<float>(h_->order, h_->bulk_dxpl, slabs, order_width_, [](const EvolutionSlab& s) { return s.values; },
                      "writing order/values of " + path_, path_, injected_errno_);
}

void ParallelSweepFile::write_heads(std::vector<HeadSlab> slabs) {
  const std::string what = "writing heads/split of " + path_;
  SAETRAJ_CHECK(h_->heads.valid(), InputError, path_, " has no /heads (the sweep ran without --heads)");
  std::sort(slabs.begin(), slabs.end(), [](const HeadSlab& a, const HeadSlab& b) {
    return std::tie(a.layer_index, a.query_begin) < std::tie(b.layer_index, b.query_begin);
  });
  const int64_t per_query = head_slots_ * head_columns_;
  const auto fspace = h5_space(H5Dget_space(h_->heads), what);
  h5_check_status(H5Sselect_none(fspace), what);
  std::vector<float> packed;
  for (const auto& s : slabs) {
    if (s.queries == 0) continue;
    const hsize_t start[4] = {static_cast<hsize_t>(s.layer_index), static_cast<hsize_t>(s.query_begin), 0, 0};
    const hsize_t count[4] = {1, static_cast<hsize_t>(s.queries), static_cast<hsize_t>(head_slots_),
                              static_cast<hsize_t>(head_columns_)};
    h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_OR, start, nullptr, count, nullptr), what);
    packed.insert(packed.end(), s.split, s.split + s.queries * per_query);
  }
  const hsize_t n = std::max<hsize_t>(1, packed.size());
  const auto mspace = h5_space(H5Screate_simple(1, &n, nullptr), what);
  if (packed.empty()) h5_check_status(H5Sselect_none(mspace), what);
  errno = 0;
  const herr_t status = injected_errno_ != 0 ? -1 : H5Dwrite(h_->heads, H5T_NATIVE_FLOAT, mspace, fspace, h_->dxpl, packed.data());
  if (status < 0) throw_write_failure(what, path_, injected_errno_ != 0 ? injected_errno_ : errno);
}

namespace {

// One collective write of query runs into a [L, Q, inner...] dataset: slab s covers queries [query_begin,
// query_begin + queries) of layer axis layer_index, `per_query` values each (the product of `inner`).
template <typename T>
void write_query_runs(hid_t dataset, hid_t dxpl, const std::vector<MlpSlab>& slabs, const std::vector<hsize_t>& inner,
                      const T* (*data_of)(const MlpSlab&), const std::string& what, const std::string& path,
                      int injected_errno) {
  hsize_t per_query = 1;
  for (hsize_t d : inner) per_query *= d;
  const auto fspace = h5_space(H5Dget_space(dataset), what);
  h5_check_status(H5Sselect_none(fspace), what);
  std::vector<T> packed;
  for (const auto& s : slabs) {
    if (s.queries == 0) continue;
    std::vector<hsize_t> start = {static_cast<hsize_t>(s.layer_index), static_cast<hsize_t>(s.query_begin)};
    std::vector<hsize_t> count = {1, static_cast<hsize_t>(s.queries)};
    for (hsize_t d : inner) start.push_back(0), count.push_back(d);
    h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_OR, start.data(), nullptr, count.data(), nullptr), what);
    packed.insert(packed.end(), data_of(s), data_of(s) + s.queries * per_query);
  }
  const hsize_t n = std::max<hsize_t>(1, packed.size());
  const auto mspace = h5_space(H5Screate_simple(1, &n, nullptr), what);
  if (packed.empty()) h5_check_status(H5Sselect_none(mspace), what);
  errno = 0;
  const herr_t status =
      injected_errno != 0 ? -1 : H5Dwrite(dataset, native_type<T>(), mspace, fspace, dxpl, packed.data());
  if (status < 0) throw_write_failure(what, path, injected_errno != 0 ? injected_errno : errno);
}

}  // namespace

void ParallelSweepFile::write_mlp(std::vector<MlpSlab> slabs) {
  SAETRAJ_CHECK(has_mlp_, InputError, path_, " has no /mlp (the sweep ran without --mlp-transcoder)");
  // The elements of a union of hyperslabs are transferred in file order.
  std::sort(slabs.begin(), slabs.end(), [](const MlpSlab& a, const MlpSlab& b) {
    return std::tie(a.layer_index, a.query_begin) < std::tie(b.layer_index, b.query_begin);
  });
  const hsize_t k = static_cast<hsize_t>(k_), c = static_cast<hsize_t>(kMlpSlotColumns);
  const std::string of = " of " + path_;
  write_query_runs<int32_t>(h_->mlp_steps, h_->dxpl, slabs, {}, [](const MlpSlab& s) { return s.steps; },
                            "writing mlp/steps" + of, path_, injected_errno_);
  write_query_runs<int32_t>(h_->mlp_indices, h_->dxpl, slabs, {k}, [](const MlpSlab& s) { return s.final_indices; },
                            "writing mlp/final_indices" + of, path_, injected_errno_);
  write_query_runs<float>(h_->mlp_values, h_->dxpl, slabs, {k}, [](const MlpSlab& s) { return s.final_values; },
                          "writing mlp/final_values" + of, path_, injected_errno_);
  write_query_runs<int32_t>(h_->mlp_slots, h_->dxpl, slabs, {k, c}, [](const MlpSlab& s) { return s.slots; },
                            "writing mlp/slots" + of, path_, injected_errno_);
  write_query_runs<float>(h_->mlp_activation, h_->dxpl, slabs, {k}, [](const MlpSlab& s) { return s.activation; },
                          "writing mlp/activation" + of, path_, injected_errno_);
}

void ParallelSweepFile::check_write(int status, const std::string& what) const {
  if (status < 0) throw_write_failure(what, path_, errno);
}

void ParallelSweepFile::write_readout(int64_t prompt, const int32_t* ids, const float* probs) {
  const bool mine = ids != nullptr;
  auto write = [&](hid_t ds, hid_t type, const void* data, const std::string& what) {
    const auto fspace = h5_space(H5Dget_space(ds), what);
    const hsize_t count[3] = {1, static_cast<hsize_t>(n_layers_), static_cast<hsize_t>(kReadoutTop)};
    const hsize_t start[3] = {static_cast<hsize_t>(prompt), 0, 0};
    const hsize_t n = count[1] * count[2];
    const auto mspace = h5_space(H5Screate_simple(1, &n, nullptr), what);
    if (mine && n > 0) {
      h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr), what);
    } else {
      h5_check_status(H5Sselect_none(fspace), what);
      h5_check_status(H5Sselect_none(mspace), what);
    }
    errno = 0;
    check_write(injected_errno_ != 0 ? -1 : H5Dwrite(ds, type, mspace, fspace, h_->dxpl, data), what);
  };
  write(h_->readout_ids, H5T_NATIVE_INT32, ids, "writing readout/token_ids of " + path_);
  write(h_->readout_probs, H5T_NATIVE_FLOAT, probs, "writing readout/probs of " + path_);
}

void ParallelSweepFile::mark_done(int64_t prompt) {
  // Evolution and readout must reach the file before the flag that vouches for them.
  errno = 0;
  check_write(H5Fflush(h_->file, H5F_SCOPE_GLOBAL), "flushing " + path_);
  const std::string what = "writing prompts/done of " + path_;
  const auto fspace = h5_space(H5Dget_space(h_->done), what);
  const hsize_t one = 1;
  const hsize_t start = static_cast<hsize_t>(prompt);
  const auto mspace = h5_space(H5Screate_simple(1, &one, nullptr), what);
  const uint8_t flag = 1;
  if (comm_.rank() == 0) {
    h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, nullptr, &one, nullptr), what);
  } else {
    h5_check_status(H5Sselect_none(fspace), what);
    h5_check_status(H5Sselect_none(mspace), what);
  }
  errno = 0;
  check_write(H5Dwrite(h_->done, H5T_NATIVE_UINT8, mspace, fspace, h_->dxpl, &flag), what);
  check_write(H5Fflush(h_->file, H5F_SCOPE_GLOBAL), "flushing " + path_);
}

namespace {

void write_final_parts(const std::string& path, const std::function<std::string(int32_t)>& token_text,
                       bool complete) {
  H5Handle f = open_serial(path, H5F_ACC_RDWR);
  const auto ids = read_vector<int32_t>(f, "readout/token_ids");
  std::vector<std::string> text;
  text.reserve(ids.size());
  for (int32_t id : ids) text.push_back(id < 0 ? std::string() : token_text(id));
  const auto ds = h5_dataset(H5Dopen2(f, "readout/token_text", H5P_DEFAULT), "readout/token_text");
  const auto space = h5_space(H5Dget_space(ds), "readout/token_text");
  std::vector<hsize_t> dims(H5Sget_simple_extent_ndims(space));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  write_strings(f, "readout/token_text", text, dims);
  // complete = 1 vouches for everything else, so it goes in only once the rest has reached the disk.
  h5_check_status(H5Fflush(f, H5F_SCOPE_GLOBAL), "flushing " + path);
  write_attr(f, "complete", int64_t{complete ? 1 : 0});
  h5_check_status(H5Fflush(f, H5F_SCOPE_GLOBAL), "flushing " + path);
}

}  // namespace

void finalize_sweep_file(const std::string& path, const std::function<std::string(int32_t)>& token_text,
                         bool complete) {
  {
    const H5Handle f = open_serial(path, H5F_ACC_RDONLY);
    const auto ids = h5_dataset(H5Dopen2(f, "readout/token_ids", H5P_DEFAULT), "readout/token_ids");
    const auto space = h5_space(H5Dget_space(ids), "readout/token_ids");
    // Each readout string costs its heap entry and reference (about 64 bytes for a short token).
    check_free_space(path, static_cast<double>(H5Sget_simple_extent_npoints(space)) * 64,
                     "finishing the sweep file " + path + " (its readout token strings)",
                     "The computed prompts are kept and marked done: free space, then run the same command with "
                     "--resume to finish the file.");
  }
  try {
    errno = 0;
    write_final_parts(path, token_text, complete);
  } catch (IoError& e) {
    e.add_context(str("cannot finish the sweep file ", path, " (", storage_failure(path, errno),
                      "); the computed prompts are kept and marked done: free space, then run the same command with "
                      "--resume to finish the file"));
    throw;
  }
}

}  // namespace saetraj::output
