#include "saetraj/output/sweep_reader.h"

#include <algorithm>

#include "saetraj/core/error.h"
#include "saetraj/output/h5.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/output/sweep_file_h5.h"
#include "saetraj/sweep/rows.h"

namespace saetraj::output {

namespace {

const std::string kAdvice = "give a sweep file written by saetraj sweep";

enum class Kind { I32, I64, U8, F32, Str };

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::I32: return "int32";
    case Kind::I64: return "int64";
    case Kind::U8: return "uint8";
    case Kind::F32: return "float32";
    case Kind::Str: return "variable-length string";
  }
  return "?";
}

// What a stored type is, in the words of kind_name.
std::string type_name(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return str(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", 8 * H5Tget_size(type));
    case H5T_FLOAT: return str("float", 8 * H5Tget_size(type));
    case H5T_STRING: return H5Tis_variable_str(type) > 0 ? "variable-length string" : "fixed-length string";
    case H5T_COMPOUND: return "compound";
    default: return "another HDF5 type";
  }
}

bool type_is(hid_t type, Kind kind) {
  const H5T_class_t c = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  switch (kind) {
    case Kind::I32: return c == H5T_INTEGER && size == 4 && H5Tget_sign(type) != H5T_SGN_NONE;
    case Kind::I64: return c == H5T_INTEGER && size == 8 && H5Tget_sign(type) != H5T_SGN_NONE;
    case Kind::U8: return c == H5T_INTEGER && size == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
    case Kind::F32: return c == H5T_FLOAT && size == 4;
    case Kind::Str: return c == H5T_STRING && H5Tis_variable_str(type) > 0;
  }
  return false;
}

std::string dims_str(const std::vector<hsize_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

std::string expected_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + (dims[i] < 0 ? "any" : std::to_string(dims[i]));
  return s + "]";
}

struct Checked {
  H5Handle ds;
  std::vector<hsize_t> dims;
};

// Opens dataset `name` and checks its type and shape (-1: any extent), or throws one line naming the file
// and the dataset. `axes` says what the extents count ("layers x rows x k").
Checked open_checked(hid_t file, const std::string& path, const std::string& name, Kind kind,
                     const std::vector<int64_t>& expected, const std::string& axes) {
  SAETRAJ_CHECK(link_exists(file, name), FormatError, path, ": missing dataset /", name,
                " (the file is damaged or was not written by saetraj sweep)");
  const hid_t id = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  SAETRAJ_CHECK(id >= 0, FormatError, path, ": /", name, " is not a dataset");
  Checked c{H5Handle(id, H5Dclose), {}};
  const auto type = h5_type(H5Dget_type(c.ds), path + ": /" + name);
  SAETRAJ_CHECK(type_is(type, kind), FormatError, path, ": /", name, " holds ", type_name(type), "; expected ",
                kind_name(kind));
  const auto space = h5_space(H5Dget_space(c.ds), path + ": /" + name);
  const int rank = H5Sget_simple_extent_ndims(space);
  SAETRAJ_CHECK(rank >= 0, FormatError, path, ": /", name, " has no simple shape");
  c.dims.resize(rank);
  H5Sget_simple_extent_dims(space, c.dims.data(), nullptr);
  bool fits = c.dims.size() == expected.size();
  for (size_t i = 0; fits && i < expected.size(); ++i) {
    fits = expected[i] < 0 || c.dims[i] == static_cast<hsize_t>(expected[i]);
  }
  SAETRAJ_CHECK(fits, FormatError, path, ": /", name, " has shape ", dims_str(c.dims), "; expected ",
                expected_str(expected), " (", axes, ")");
  return c;
}

template <typename T>
hid_t memory_type() {
  return native_type<T>();
}

template <typename T>
std::vector<T> read_all(hid_t ds, const std::string& path, const std::string& name) {
  const auto space = h5_space(H5Dget_space(ds), path + ": /" + name);
  std::vector<T> v(H5Sget_simple_extent_npoints(space));
  if (!v.empty()) {
    h5_check_status(H5Dread(ds, memory_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()),
                    path + ": reading /" + name);
  }
  return v;
}

std::vector<std::string> read_all_strings(hid_t ds, const std::string& path, const std::string& name) {
  const auto space = h5_space(H5Dget_space(ds), path + ": /" + name);
  const auto type = vlen_utf8_type();
  std::vector<char*> ptrs(H5Sget_simple_extent_npoints(space), nullptr);
  if (!ptrs.empty()) {
    h5_check_status(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), path + ": reading /" + name);
  }
  std::vector<std::string> out;
  out.reserve(ptrs.size());
  for (char* p : ptrs) {
    out.emplace_back(p ? p : "");
    H5free_memory(p);
  }
  return out;
}

template <typename T>
std::vector<T> read_checked(hid_t file, const std::string& path, const std::string& name, Kind kind,
                            const std::vector<int64_t>& expected, const std::string& axes) {
  const auto c = open_checked(file, path, name, kind, expected, axes);
  return read_all<T>(c.ds, path, name);
}

std::vector<std::string> read_checked_strings(hid_t file, const std::string& path, const std::string& name,
                                              const std::vector<int64_t>& expected, const std::string& axes) {
  const auto c = open_checked(file, path, name, Kind::Str, expected, axes);
  return read_all_strings(c.ds, path, name);
}

// A hyperslab [start, start + count) of a dataset, checked against its extents.
template <typename T>
std::vector<T> read_block(hid_t ds, const std::vector<hsize_t>& dims, const std::vector<hsize_t>& start,
                          const std::vector<hsize_t>& count, const std::string& path, const std::string& name) {
  hsize_t n = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    SAETRAJ_CHECK(start[i] <= dims[i] && count[i] <= dims[i] - start[i], InputError, path, ": reading /", name,
                  " at ", dims_str(start), " + ", dims_str(count), " goes beyond its shape ", dims_str(dims));
    n *= count[i];
  }
  std::vector<T> out(n);
  if (n == 0) return out;
  const auto fspace = h5_space(H5Dget_space(ds), path + ": /" + name);
  h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
                  path + ": /" + name);
  const auto mspace = h5_space(H5Screate_simple(1, &n, nullptr), path + ": /" + name);
  h5_check_status(H5Dread(ds, memory_type<T>(), mspace, fspace, H5P_DEFAULT, out.data()),
                  path + ": reading /" + name);
  return out;
}

// Attributes, each refused with the file and the object named when missing or of the wrong kind.
H5Handle open_attr(hid_t obj, const std::string& path, const std::string& where, const std::string& name,
                   H5T_class_t cls, const char* what) {
  SAETRAJ_CHECK(has_attr(obj, name), FormatError, path, ": ", where, " has no attribute '", name, "'");
  H5Handle attr = h5_attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT), path + ": attribute " + name);
  const auto type = h5_type(H5Aget_type(attr), path + ": attribute " + name);
  SAETRAJ_CHECK(H5Tget_class(type) == cls, FormatError, path, ": attribute '", name, "' of ", where, " holds ",
                type_name(type), "; expected ", what);
  return attr;
}

int64_t attr_int(hid_t obj, const std::string& path, const std::string& where, const std::string& name) {
  const auto attr = open_attr(obj, path, where, name, H5T_INTEGER, "an integer");
  const auto space = h5_space(H5Aget_space(attr), path + ": attribute " + name);
  SAETRAJ_CHECK(H5Sget_simple_extent_npoints(space) == 1, FormatError, path, ": attribute '", name, "' of ",
                where, " holds ", H5Sget_simple_extent_npoints(space), " values; expected one");
  int64_t v = 0;
  h5_check_status(H5Aread(attr, H5T_NATIVE_INT64, &v), path + ": attribute " + name);
  return v;
}

std::string attr_string(hid_t obj, const std::string& path, const std::string& where, const std::string& name) {
  open_attr(obj, path, where, name, H5T_STRING, "a string");
  return read_attr_string(obj, name);
}

std::vector<int32_t> attr_ints(hid_t obj, const std::string& path, const std::string& where, const std::string& name) {
  open_attr(obj, path, where, name, H5T_INTEGER, "integers");
  return read_attr_ints(obj, name);
}

std::vector<std::string> attr_strings(hid_t obj, const std::string& path, const std::string& where,
                                      const std::string& name) {
  const auto attr = open_attr(obj, path, where, name, H5T_STRING, "strings");
  const auto type = h5_type(H5Aget_type(attr), path + ": attribute " + name);
  SAETRAJ_CHECK(H5Tis_variable_str(type) > 0, FormatError, path, ": attribute '", name, "' of ", where,
                " holds fixed-length strings; expected variable-length strings");
  return read_attr_strings(obj, name);
}

std::string optional_string(hid_t obj, const std::string& path, const std::string& name) {
  return has_attr(obj, name) ? attr_string(obj, path, "the root", name) : std::string();
}

std::vector<std::string> optional_strings(hid_t obj, const std::string& path, const std::string& name) {
  return has_attr(obj, name) ? attr_strings(obj, path, "the root", name) : std::vector<std::string>();
}

// The members of the graph tables, in the order of the record structs (all int32).
const std::vector<std::string> kTrajectoryFields = {"prompt", "length", "layer", "source_token", "feature",
                                                    "final_position"};
const std::vector<std::string> kEdgeFields = {"prompt", "length", "from_token", "from_layer", "to_token",
                                              "to_layer", "num_trajectories", "best_final_position"};
const std::vector<std::string> kTracedFields = {"prompt", "from_token", "from_layer", "to_token", "to_layer",
                                                "num_trajectories", "best_final_position"};
const std::vector<std::string> kMlpPathFields = {"prompt", "token", "layer", "step", "steps", "term",
                                                 "transcoder_feature", "feature", "final_position"};
static_assert(sizeof(MlpPathRecord) == 9 * sizeof(int32_t));
static_assert(sizeof(TrajectoryRecord) == 6 * sizeof(int32_t));
static_assert(sizeof(EdgeRecord) == 8 * sizeof(int32_t));
static_assert(sizeof(TracedEdgeRecord) == 7 * sizeof(int32_t));

// The in-memory (and, when writing, in-file) compound type: one int32 per field, packed in order.
H5Handle table_type(const std::vector<std::string>& fields) {
  H5Handle t = h5_type(H5Tcreate(H5T_COMPOUND, fields.size() * sizeof(int32_t)), "graph table type");
  for (size_t i = 0; i < fields.size(); ++i) {
    h5_check_status(H5Tinsert(t, fields[i].c_str(), i * sizeof(int32_t), H5T_NATIVE_INT32), "graph table type");
  }
  return t;
}

// Opens a graph table and checks its fields, or throws one line naming the file and the dataset; returns
// the dataset and its row count.
std::pair<H5Handle, int64_t> open_table(hid_t file, const std::string& path, const std::string& name,
                                        const std::vector<std::string>& fields) {
  SAETRAJ_CHECK(link_exists(file, name), FormatError, path, ": missing dataset /", name,
                " (rebuild the graphs with saetraj graph)");
  const hid_t id = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  SAETRAJ_CHECK(id >= 0, FormatError, path, ": /", name, " is not a dataset");
  H5Handle ds(id, H5Dclose);
  const auto type = h5_type(H5Dget_type(ds), path + ": /" + name);
  SAETRAJ_CHECK(H5Tget_class(type) == H5T_COMPOUND, FormatError, path, ": /", name, " holds ", type_name(type),
                "; expected a table (compound) of int32 fields");
  for (const auto& field : fields) {
    const int index = H5Tget_member_index(type, field.c_str());
    SAETRAJ_CHECK(index >= 0, FormatError, path, ": /", name, " has no field '", field, "'");
    SAETRAJ_CHECK(H5Tget_member_class(type, static_cast<unsigned>(index)) == H5T_INTEGER, FormatError, path, ": /",
                  name, " field '", field, "' is not an integer");
  }
  const auto space = h5_space(H5Dget_space(ds), path + ": /" + name);
  SAETRAJ_CHECK(H5Sget_simple_extent_ndims(space) == 1, FormatError, path, ": /", name, " has ",
                H5Sget_simple_extent_ndims(space), " dimensions; expected 1 (rows)");
  const int64_t rows = H5Sget_simple_extent_npoints(space);
  return {std::move(ds), rows};
}

template <typename Record>
std::vector<Record> read_table(hid_t file, const std::string& path, const std::string& name,
                               const std::vector<std::string>& fields) {
  const auto [ds, n] = open_table(file, path, name, fields);
  std::vector<Record> rows(n);
  if (!rows.empty()) {
    h5_check_status(H5Dread(ds, table_type(fields), H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()),
                    path + ": reading /" + name);
  }
  return rows;
}

template <typename Record>
void write_table(hid_t group, const std::string& path, const std::string& name, const std::vector<std::string>& fields,
                 const std::vector<Record>& rows) {
  const auto type = table_type(fields);
  const hsize_t n = rows.size();
  const auto space = h5_space(H5Screate_simple(1, &n, nullptr), path + ": " + name);
  const auto ds = h5_dataset(H5Dcreate2(group, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                             path + ": creating " + name);
  if (n) h5_check_status(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()), path + ": writing " + name);
}

template <typename T>
void write_trajectory_matrix(hid_t group, const std::string& path, const std::string& name, const std::vector<T>& data,
                  hsize_t rows, hsize_t columns, const std::vector<std::string>& column_names) {
  SAETRAJ_CHECK(data.size() == rows * columns, InputError, path, ": ", name, " has ", data.size(),
                " values for ", rows, " x ", columns);
  write_matrix(group, name, data, rows, columns, column_names);
}

}  // namespace

struct SweepReader::Impl {
  std::string path;
  bool writable = false;
  H5Handle file;
  SweepAttributes attrs;
  SweepPrompts prompts;
  int64_t rows = 0, queries = 0;
  Checked row_query, row_step, indices, values;
  int64_t head_slots = 0, heads = 0;
  std::vector<std::string> head_columns;
  std::vector<int64_t> head_query_offset;
  Checked head_split;
  int64_t order_slots = 0, orders = 0, order_seed = 0;
  Checked order_values;
  std::vector<std::string> mlp_ids, mlp_hooks, mlp_hooks_out;
  Checked mlp_steps, mlp_indices, mlp_values, mlp_slots, mlp_activation;

  void read_attributes();
  void read_prompts();
  void check_tables();
  void check_heads();
  void check_order();
  void check_mlp();
};

void SweepReader::Impl::read_attributes() {
  auto& a = attrs;
  const std::string root = "the root";
  a.format_version = attr_int(file, path, root, "format_version");
  a.model = attr_string(file, path, root, "model");
  a.architecture = attr_string(file, path, root, "architecture");
  a.d_model = attr_int(file, path, root, "d_model");
  a.n_model_layers = attr_int(file, path, root, "n_model_layers");
  a.layers = attr_ints(file, path, root, "layers");
  a.k = attr_int(file, path, root, "k");
  a.sae_ids = attr_strings(file, path, root, "sae_ids");
  a.sae_hooks = optional_strings(file, path, "sae_hooks");
  a.sae_preprocessing = optional_strings(file, path, "sae_preprocessing");
  a.bos = optional_string(file, path, "bos");
  a.complete = attr_int(file, path, root, "complete") != 0;
  a.created_utc = attr_string(file, path, root, "created_utc");
  a.command_line = attr_string(file, path, root, "command_line");
  a.config_json = optional_string(file, path, "config");
  SAETRAJ_CHECK(!a.layers.empty(), FormatError, path, ": attribute 'layers' is empty");
  SAETRAJ_CHECK(a.k >= 1, FormatError, path, ": attribute 'k' is ", a.k, "; expected >= 1");
  SAETRAJ_CHECK(a.sae_ids.size() == a.layers.size(), FormatError, path, ": attribute 'sae_ids' holds ",
                a.sae_ids.size(), " ids for ", a.layers.size(), " layers");
}

void SweepReader::Impl::read_prompts() {
  auto& p = prompts;
  p.text = read_checked_strings(file, path, "prompts/text", {-1}, "prompts");
  const int64_t n = static_cast<int64_t>(p.text.size());
  p.id = link_exists(file, "prompts/id") ? read_checked_strings(file, path, "prompts/id", {n}, "prompts")
                                         : std::vector<std::string>(n);
  p.n_tokens = read_checked<int32_t>(file, path, "prompts/n_tokens", Kind::I32, {n}, "prompts");
  p.token_offset = read_checked<int64_t>(file, path, "prompts/token_offset", Kind::I64, {n}, "prompts");
  p.row_offset = read_checked<int64_t>(file, path, "prompts/row_offset", Kind::I64, {n}, "prompts");
  p.done = read_checked<uint8_t>(file, path, "prompts/done", Kind::U8, {n}, "prompts");
  int64_t tokens = 0;
  for (int64_t i = 0; i < n; ++i) {
    SAETRAJ_CHECK(p.n_tokens[i] >= 1, FormatError, path, ": /prompts/n_tokens[", i, "] is ", p.n_tokens[i],
                  "; expected >= 1");
    SAETRAJ_CHECK(p.token_offset[i] == tokens, FormatError, path, ": /prompts/token_offset[", i, "] is ",
                  p.token_offset[i], "; expected ", tokens, " (the tokens of the prompts before it)");
    SAETRAJ_CHECK(p.row_offset[i] == rows, FormatError, path, ": /prompts/row_offset[", i, "] is ", p.row_offset[i],
                  "; expected ", rows, " (the rows of the prompts before it)");
    tokens += p.n_tokens[i];
    rows += sweep::rows_of_prompt(p.n_tokens[i]);
    queries += p.n_tokens[i] - 1;
  }
  p.token_ids = read_checked<int32_t>(file, path, "tokens/ids", Kind::I32, {tokens}, "sum of /prompts/n_tokens");
  p.token_text = read_checked_strings(file, path, "tokens/text", {tokens}, "sum of /prompts/n_tokens");
  if (link_exists(file, "skipped")) {
    p.skipped_line = read_checked<int64_t>(file, path, "skipped/line", Kind::I64, {-1}, "skipped prompts");
    const int64_t s = static_cast<int64_t>(p.skipped_line.size());
    p.skipped_id = read_checked_strings(file, path, "skipped/id", {s}, "skipped prompts");
    p.skipped_text = read_checked_strings(file, path, "skipped/text", {s}, "skipped prompts");
    p.skipped_reason = read_checked_strings(file, path, "skipped/reason", {s}, "skipped prompts");
  }
}

void SweepReader::Impl::check_tables() {
  const int64_t L = static_cast<int64_t>(attrs.layers.size()), P = static_cast<int64_t>(prompts.text.size());
  row_query = open_checked(file, path, "evolution/row_query", Kind::I32, {rows}, "rows");
  row_step = open_checked(file, path, "evolution/row_step", Kind::I32, {rows}, "rows");
  indices = open_checked(file, path, "evolution/indices", Kind::I32, {L, rows, attrs.k}, "layers x rows x k");
  values = open_checked(file, path, "evolution/values", Kind::F32, {L, rows, attrs.k}, "layers x rows x k");
  open_checked(file, path, "readout/token_ids", Kind::I32, {P, L, kReadoutTop}, "prompts x layers x 5");
  open_checked(file, path, "readout/probs", Kind::F32, {P, L, kReadoutTop}, "prompts x layers x 5");
  open_checked(file, path, "readout/token_text", Kind::Str, {P, L, kReadoutTop}, "prompts x layers x 5");
}

void SweepReader::Impl::check_heads() {
  if (!link_exists(file, "heads")) return;
  const auto group = h5_group(H5Gopen2(file, "heads", H5P_DEFAULT), path + ": /heads");
  head_slots = attr_int(group, path, "/heads", "slots");
  heads = attr_int(group, path, "/heads", "heads");
  head_columns = attr_strings(group, path, "/heads", "columns");
  SAETRAJ_CHECK(head_slots >= 1 && heads >= 1, FormatError, path, ": /heads has slots = ", head_slots,
                " and heads = ", heads, "; expected both >= 1");
  SAETRAJ_CHECK(static_cast<int64_t>(head_columns.size()) == heads + 3, FormatError, path,
                ": attribute 'columns' of /heads names ", head_columns.size(), " columns; expected heads + 3 = ",
                heads + 3);
  const int64_t P = static_cast<int64_t>(prompts.text.size());
  head_query_offset = read_checked<int64_t>(file, path, "heads/query_offset", Kind::I64, {P}, "prompts");
  int64_t q = 0;
  for (int64_t p = 0; p < P; ++p) {
    SAETRAJ_CHECK(head_query_offset[p] == q, FormatError, path, ": /heads/query_offset[", p, "] is ",
                  head_query_offset[p], "; expected ", q, " (the queries of the prompts before it)");
    q += prompts.n_tokens[p] - 1;
  }
  head_split = open_checked(file, path, "heads/split", Kind::F32,
                            {static_cast<int64_t>(attrs.layers.size()), queries, head_slots, heads + 3},
                            "layers x queries x slots x (heads + 3)");
}

void SweepReader::Impl::check_order() {
  if (!link_exists(file, "order")) return;
  const auto group = h5_group(H5Gopen2(file, "order", H5P_DEFAULT), path + ": /order");
  order_slots = attr_int(group, path, "/order", "slots");
  orders = attr_int(group, path, "/order", "orders");
  order_seed = attr_int(group, path, "/order", "seed");
  SAETRAJ_CHECK(order_slots >= 1, FormatError, path, ": /order has slots = ", order_slots, "; expected >= 1");
  order_values = open_checked(file, path, "order/values", Kind::F32,
                              {static_cast<int64_t>(attrs.layers.size()), rows, 3 * order_slots},
                              "layers x rows x 3 slots");
}

// /mlp (NOTE The MLP path in sweep_file.h); open_sweep_file has refused it in a file of version < 3.
void SweepReader::Impl::check_mlp() {
  if (!link_exists(file, "mlp")) return;
  const auto group = h5_group(H5Gopen2(file, "mlp", H5P_DEFAULT), path + ": /mlp");
  const int64_t L = static_cast<int64_t>(attrs.layers.size()), k = attrs.k;
  mlp_ids = attr_strings(group, path, "/mlp", "transcoder_ids");
  mlp_hooks = attr_strings(group, path, "/mlp", "transcoder_hooks");
  mlp_hooks_out = attr_strings(group, path, "/mlp", "transcoder_hooks_out");
  for (const auto* names : {&mlp_ids, &mlp_hooks, &mlp_hooks_out}) {
    SAETRAJ_CHECK(static_cast<int64_t>(names->size()) == L, FormatError, path, ": an attribute of /mlp holds ",
                  names->size(), " transcoders (ids or hooks) for ", L, " layers");
  }
  mlp_steps = open_checked(file, path, "mlp/steps", Kind::I32, {L, queries}, "layers x queries");
  mlp_indices = open_checked(file, path, "mlp/final_indices", Kind::I32, {L, queries, k}, "layers x queries x k");
  mlp_values = open_checked(file, path, "mlp/final_values", Kind::F32, {L, queries, k}, "layers x queries x k");
  mlp_slots = open_checked(file, path, "mlp/slots", Kind::I32, {L, queries, k, kMlpSlotColumns},
                           "layers x queries x k x 3");
  mlp_activation = open_checked(file, path, "mlp/activation", Kind::F32, {L, queries, k}, "layers x queries x k");
}

SweepReader::SweepReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SweepReader::SweepReader(SweepReader&&) noexcept = default;
SweepReader& SweepReader::operator=(SweepReader&&) noexcept = default;
SweepReader::~SweepReader() = default;

SweepReader SweepReader::open(const std::string& path, bool writable) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->writable = writable;
  impl->file = open_sweep_file(path, writable, kAdvice);
  impl->read_attributes();
  impl->read_prompts();
  impl->check_tables();
  impl->check_heads();
  impl->check_order();
  impl->check_mlp();
  return SweepReader(std::move(impl));
}

const std::string& SweepReader::path() const { return impl_->path; }
const SweepAttributes& SweepReader::attributes() const { return impl_->attrs; }
const SweepPrompts& SweepReader::prompts() const { return impl_->prompts; }
int64_t SweepReader::n_prompts() const { return static_cast<int64_t>(impl_->prompts.text.size()); }
int64_t SweepReader::n_layers() const { return static_cast<int64_t>(impl_->attrs.layers.size()); }
int64_t SweepReader::k() const { return impl_->attrs.k; }
int64_t SweepReader::total_rows() const { return impl_->rows; }
int64_t SweepReader::total_queries() const { return impl_->queries; }

std::vector<int32_t> SweepReader::row_query() const {
  return read_all<int32_t>(impl_->row_query.ds, impl_->path, "evolution/row_query");
}
std::vector<int32_t> SweepReader::row_step() const {
  return read_all<int32_t>(impl_->row_step.ds, impl_->path, "evolution/row_step");
}

std::vector<int32_t> SweepReader::evolution_indices(int64_t layer_index, int64_t row_begin, int64_t rows) const {
  SAETRAJ_CHECK(layer_index >= 0 && row_begin >= 0 && rows >= 0, InputError, impl_->path,
                ": negative layer or row range for /evolution/indices");
  const auto& c = impl_->indices;
  return read_block<int32_t>(c.ds, c.dims, {static_cast<hsize_t>(layer_index), static_cast<hsize_t>(row_begin), 0},
                             {1, static_cast<hsize_t>(rows), c.dims[2]}, impl_->path, "evolution/indices");
}

std::vector<float> SweepReader::evolution_values(int64_t layer_index, int64_t row_begin, int64_t rows) const {
  SAETRAJ_CHECK(layer_index >= 0 && row_begin >= 0 && rows >= 0, InputError, impl_->path,
                ": negative layer or row range for /evolution/values");
  const auto& c = impl_->values;
  return read_block<float>(c.ds, c.dims, {static_cast<hsize_t>(layer_index), static_cast<hsize_t>(row_begin), 0},
                           {1, static_cast<hsize_t>(rows), c.dims[2]}, impl_->path, "evolution/values");
}

SweepReadout SweepReader::readout() const {
  const auto& f = impl_->file;
  SweepReadout r;
  r.token_ids = read_vector<int32_t>(f, "readout/token_ids");
  r.probs = read_vector<float>(f, "readout/probs");
  r.token_text = read_strings(f, "readout/token_text");
  return r;
}

bool SweepReader::has_heads() const { return impl_->head_slots > 0; }
int64_t SweepReader::head_slots() const { return impl_->head_slots; }
int64_t SweepReader::heads() const { return impl_->heads; }
const std::vector<std::string>& SweepReader::head_column_names() const { return impl_->head_columns; }
std::vector<int64_t> SweepReader::head_query_offset() const { return impl_->head_query_offset; }

std::vector<float> SweepReader::head_split(int64_t prompt) const {
  SAETRAJ_CHECK(has_heads(), InputError, impl_->path, " has no /heads (the sweep ran without --heads)");
  SAETRAJ_CHECK(prompt >= 0 && prompt < n_prompts(), InputError, impl_->path, ": no prompt ", prompt, " (it holds ",
                n_prompts(), ")");
  const auto& c = impl_->head_split;
  const hsize_t queries = static_cast<hsize_t>(impl_->prompts.n_tokens[prompt] - 1);
  return read_block<float>(c.ds, c.dims, {0, static_cast<hsize_t>(impl_->head_query_offset[prompt]), 0, 0},
                           {c.dims[0], queries, c.dims[2], c.dims[3]}, impl_->path, "heads/split");
}

bool SweepReader::has_order() const { return impl_->order_slots > 0; }
int64_t SweepReader::order_slots() const { return impl_->order_slots; }
int64_t SweepReader::orders() const { return impl_->orders; }
int64_t SweepReader::order_seed() const { return impl_->order_seed; }

std::vector<float> SweepReader::order_values(int64_t row_begin, int64_t rows) const {
  SAETRAJ_CHECK(has_order(), InputError, impl_->path, " has no /order (the sweep ran without --orders)");
  SAETRAJ_CHECK(row_begin >= 0 && rows >= 0, InputError, impl_->path, ": negative row range for /order/values");
  const auto& c = impl_->order_values;
  return read_block<float>(c.ds, c.dims, {0, static_cast<hsize_t>(row_begin), 0},
                           {c.dims[0], static_cast<hsize_t>(rows), c.dims[2]}, impl_->path, "order/values");
}

bool SweepReader::has_mlp() const { return !impl_->mlp_ids.empty(); }
const std::vector<std::string>& SweepReader::mlp_transcoder_ids() const { return impl_->mlp_ids; }
const std::vector<std::string>& SweepReader::mlp_transcoder_hooks() const { return impl_->mlp_hooks; }
const std::vector<std::string>& SweepReader::mlp_transcoder_hooks_out() const { return impl_->mlp_hooks_out; }

MlpRecords SweepReader::mlp(int64_t prompt) const {
  SAETRAJ_CHECK(has_mlp(), InputError, impl_->path, " has no /mlp (the sweep ran without --mlp-transcoder)");
  SAETRAJ_CHECK(prompt >= 0 && prompt < n_prompts(), InputError, impl_->path, ": no prompt ", prompt, " (it holds ",
                n_prompts(), ")");
  hsize_t offset = 0;
  for (int64_t p = 0; p < prompt; ++p) offset += static_cast<hsize_t>(impl_->prompts.n_tokens[p] - 1);
  const hsize_t queries = static_cast<hsize_t>(impl_->prompts.n_tokens[prompt] - 1);
  const auto block = [&](const Checked& c, const char* name, auto tag) {
    std::vector<hsize_t> start = {0, offset}, count = {c.dims[0], queries};
    for (size_t i = 2; i < c.dims.size(); ++i) start.push_back(0), count.push_back(c.dims[i]);
    return read_block<decltype(tag)>(c.ds, c.dims, start, count, impl_->path, name);
  };
  MlpRecords r;
  r.steps = block(impl_->mlp_steps, "mlp/steps", int32_t{});
  r.final_indices = block(impl_->mlp_indices, "mlp/final_indices", int32_t{});
  r.final_values = block(impl_->mlp_values, "mlp/final_values", float{});
  r.slots = block(impl_->mlp_slots, "mlp/slots", int32_t{});
  r.activation = block(impl_->mlp_activation, "mlp/activation", float{});
  return r;
}

std::vector<std::string> SweepReader::graph_groups() const {
  H5G_info_t info{};
  h5_check_status(H5Gget_info(impl_->file, &info), impl_->path + ": listing the root group");
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = H5Lget_name_by_idx(impl_->file, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0) continue;
    std::string name(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(impl_->file, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<size_t>(len));
    if (name == "graphs" || name.rfind("graphs_T", 0) == 0) out.push_back(name);
  }
  return out;
}

bool SweepReader::has_graphs() const { return link_exists(impl_->file, "graphs"); }

int64_t SweepReader::graph_top_t(const std::string& group) const {
  const auto& path = impl_->path;
  SAETRAJ_CHECK(link_exists(impl_->file, group), InputError, path, " has no /", group, "; run `saetraj graph ", path,
                "` first");
  const auto g = h5_group(H5Gopen2(impl_->file, group.c_str(), H5P_DEFAULT), path + ": /" + group);
  return attr_int(g, path, "/" + group, "top_t");
}

GraphTables SweepReader::graphs(const std::string& group) const {
  const auto& path = impl_->path;
  const hid_t f = impl_->file;
  GraphTables t;
  t.top_t = graph_top_t(group);
  t.trajectories = read_table<TrajectoryRecord>(f, path, group + "/trajectories", kTrajectoryFields);
  t.edges = read_table<EdgeRecord>(f, path, group + "/edges", kEdgeFields);
  t.traced_edges = read_table<TracedEdgeRecord>(f, path, group + "/traced_edges", kTracedFields);
  const int64_t n = static_cast<int64_t>(t.trajectories.size());
  if (link_exists(f, group + "/trajectory_heads")) {
    const auto c = open_checked(f, path, group + "/trajectory_heads", Kind::F32, {n, -1}, "trajectories x columns");
    t.head_columns = static_cast<int64_t>(c.dims[1]);
    t.head_column_names = attr_strings(c.ds, path, "/" + group + "/trajectory_heads", "columns");
    SAETRAJ_CHECK(static_cast<int64_t>(t.head_column_names.size()) == t.head_columns, FormatError, path,
                  ": attribute 'columns' of /", group, "/trajectory_heads names ", t.head_column_names.size(),
                  " columns for ", t.head_columns);
    t.trajectory_heads = read_all<float>(c.ds, path, group + "/trajectory_heads");
  }
  if (link_exists(f, group + "/trajectory_order")) {
    const auto c = open_checked(f, path, group + "/trajectory_order", Kind::I32, {n, 4}, "trajectories x 4");
    t.has_order = true;
    t.order_column_names = attr_strings(c.ds, path, "/" + group + "/trajectory_order", "columns");
    t.trajectory_order = read_all<int32_t>(c.ds, path, group + "/trajectory_order");
  }
  if (link_exists(f, group + "/trajectory_order_values")) {
    const auto c = open_checked(f, path, group + "/trajectory_order_values", Kind::F32, {n, -1},
                                "trajectories x columns");
    t.order_value_columns = static_cast<int64_t>(c.dims[1]);
    t.order_value_column_names = attr_strings(c.ds, path, "/" + group + "/trajectory_order_values", "columns");
    SAETRAJ_CHECK(static_cast<int64_t>(t.order_value_column_names.size()) == t.order_value_columns, FormatError,
                  path, ": attribute 'columns' of /", group, "/trajectory_order_values names ",
                  t.order_value_column_names.size(), " columns for ", t.order_value_columns);
    t.trajectory_order_values = read_all<float>(c.ds, path, group + "/trajectory_order_values");
  }
  if (link_exists(f, group + "/mlp_path")) {
    t.has_mlp_path = true;
    t.mlp_path = read_table<MlpPathRecord>(f, path, group + "/mlp_path", kMlpPathFields);
    const int64_t rows = static_cast<int64_t>(t.mlp_path.size());
    t.mlp_path_activation =
        read_checked<float>(f, path, group + "/mlp_path_activation", Kind::F32, {rows}, "rows of /" + group + "/mlp_path");
    for (int64_t r = 0; r < rows; ++r) {
      const auto& m = t.mlp_path[static_cast<size_t>(r)];
      SAETRAJ_CHECK(m.term >= 0 && m.term <= 3 && (m.term == 0) == (m.transcoder_feature >= 0) && m.step >= 1 &&
                        m.step < m.steps && m.final_position >= 0 && m.final_position <= t.top_t,
                    FormatError, path, ": /", group, "/mlp_path row ", r, " (term ", m.term, ", transcoder feature ",
                    m.transcoder_feature, ", step ", m.step, " of ", m.steps, ", final position ", m.final_position,
                    ") is not an MLP step that brought a feature into the top T + 1");
    }
  }
  return t;
}

namespace {

// /explanations or /mlp_explanations: {layer, feature, text}, one row per explained (layer, feature).
std::vector<ExplanationRecord> read_explanation_group(hid_t f, const std::string& path, const std::string& group) {
  const auto layer = read_checked<int32_t>(f, path, group + "/layer", Kind::I32, {-1}, group);
  const int64_t n = static_cast<int64_t>(layer.size());
  const auto feature = read_checked<int32_t>(f, path, group + "/feature", Kind::I32, {n}, group);
  const auto text = read_checked_strings(f, path, group + "/text", {n}, group);
  std::vector<ExplanationRecord> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) out.push_back({layer[i], feature[i], text[i]});
  return out;
}

void write_explanation_group(hid_t f, const std::string& path, const std::string& group,
                             const std::vector<ExplanationRecord>& rows) {
  if (link_exists(f, group)) {
    h5_check_status(H5Ldelete(f, group.c_str(), H5P_DEFAULT), path + ": replacing /" + group);
  }
  std::vector<int32_t> layer, feature;
  std::vector<std::string> text;
  for (const auto& r : rows) {
    layer.push_back(r.layer);
    feature.push_back(r.feature);
    text.push_back(r.text);
  }
  write_vector(f, group + "/layer", layer);
  write_vector(f, group + "/feature", feature);
  write_strings(f, group + "/text", text, {static_cast<hsize_t>(text.size())});
  h5_check_status(H5Fflush(f, H5F_SCOPE_GLOBAL), "flushing " + path);
}

}  // namespace

bool SweepReader::has_explanations() const { return link_exists(impl_->file, "explanations"); }

std::vector<ExplanationRecord> SweepReader::explanations() const {
  const auto& path = impl_->path;
  SAETRAJ_CHECK(has_explanations(), InputError, path, " has no /explanations; run `saetraj explain ", path,
                "` first");
  return read_explanation_group(impl_->file, path, "explanations");
}

bool SweepReader::has_mlp_explanations() const { return link_exists(impl_->file, "mlp_explanations"); }

std::vector<ExplanationRecord> SweepReader::mlp_explanations() const {
  const auto& path = impl_->path;
  SAETRAJ_CHECK(has_mlp_explanations(), InputError, path, " has no /mlp_explanations; run `saetraj explain ", path,
                "` on a sweep made with --mlp-transcoder first");
  return read_explanation_group(impl_->file, path, "mlp_explanations");
}

void SweepReader::write_graphs(const std::string& group, const GraphTables& t) {
  const auto& path = impl_->path;
  const hid_t f = impl_->file;
  SAETRAJ_CHECK(impl_->writable, InputError, path, " was opened read-only; open it writable to add graphs");
  SAETRAJ_CHECK(group == "graphs" || group.rfind("graphs_T", 0) == 0, InputError, "graph tables go to /graphs or "
                "/graphs_T<T>, not /", group);
  const size_t n_rows = t.trajectories.size();
  SAETRAJ_CHECK(t.trajectory_heads.size() == n_rows * static_cast<size_t>(std::max<int64_t>(0, t.head_columns)) &&
                    t.head_column_names.size() == static_cast<size_t>(std::max<int64_t>(0, t.head_columns)),
                InputError, path, ": trajectory_heads has ", t.trajectory_heads.size(), " values and ",
                t.head_column_names.size(), " column names for ", n_rows, " trajectories x ", t.head_columns,
                " columns");
  SAETRAJ_CHECK(!t.has_order || (t.trajectory_order.size() == n_rows * 4 && t.order_column_names.size() == 4),
                InputError, path, ": trajectory_order has ", t.trajectory_order.size(), " values for ", n_rows,
                " trajectories x 4 columns");
  SAETRAJ_CHECK(t.trajectory_order_values.size() ==
                        n_rows * static_cast<size_t>(std::max<int64_t>(0, t.order_value_columns)) &&
                    t.order_value_column_names.size() == static_cast<size_t>(std::max<int64_t>(0, t.order_value_columns)),
                InputError, path, ": trajectory_order_values has ", t.trajectory_order_values.size(), " values and ",
                t.order_value_column_names.size(), " column names for ", n_rows, " trajectories x ",
                t.order_value_columns, " columns");
  if (link_exists(f, group)) h5_check_status(H5Ldelete(f, group.c_str(), H5P_DEFAULT), path + ": replacing /" + group);
  const auto g = h5_group(H5Gcreate2(f, group.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), path + ": /" + group);
  write_attr(g, "top_t", t.top_t);
  write_table(g, path, "trajectories", kTrajectoryFields, t.trajectories);
  write_table(g, path, "edges", kEdgeFields, t.edges);
  write_table(g, path, "traced_edges", kTracedFields, t.traced_edges);
  const hsize_t n = t.trajectories.size();
  if (t.head_columns > 0) {
    write_trajectory_matrix(g, path, "trajectory_heads", t.trajectory_heads, n, static_cast<hsize_t>(t.head_columns),
                 t.head_column_names);
  }
  if (t.has_order) write_trajectory_matrix(g, path, "trajectory_order", t.trajectory_order, n, 4, t.order_column_names);
  if (t.order_value_columns > 0) {
    write_trajectory_matrix(g, path, "trajectory_order_values", t.trajectory_order_values, n,
                 static_cast<hsize_t>(t.order_value_columns), t.order_value_column_names);
  }
  if (t.has_mlp_path) {
    SAETRAJ_CHECK(t.mlp_path_activation.size() == t.mlp_path.size(), InputError, path, ": mlp_path_activation has ",
                  t.mlp_path_activation.size(), " values for ", t.mlp_path.size(), " rows of mlp_path");
    write_table(g, path, "mlp_path", kMlpPathFields, t.mlp_path);
    write_vector(g, "mlp_path_activation", t.mlp_path_activation);
  }
  h5_check_status(H5Fflush(f, H5F_SCOPE_GLOBAL), "flushing " + path);
}

void SweepReader::write_explanations(const std::vector<ExplanationRecord>& rows) {
  SAETRAJ_CHECK(impl_->writable, InputError, impl_->path, " was opened read-only; open it writable to add explanations");
  write_explanation_group(impl_->file, impl_->path, "explanations", rows);
}

void SweepReader::write_mlp_explanations(const std::vector<ExplanationRecord>& rows) {
  SAETRAJ_CHECK(impl_->writable, InputError, impl_->path,
                " was opened read-only; open it writable to add transcoder explanations");
  write_explanation_group(impl_->file, impl_->path, "mlp_explanations", rows);
}

}  // namespace saetraj::output

// ---- Ranged reads of the graph tables (saetraj index) ------------------------------------------------------

namespace saetraj::output {

namespace {

// Rows [begin, begin + rows) of a [n, columns] dataset (columns 1 for a table), checked against its extent.
void select_rows(hid_t ds, hid_t fspace, int64_t begin, int64_t rows, int64_t columns, const std::string& path,
                 const std::string& name) {
  std::vector<hsize_t> dims(static_cast<size_t>(H5Sget_simple_extent_ndims(fspace)));
  H5Sget_simple_extent_dims(fspace, dims.data(), nullptr);
  SAETRAJ_CHECK(begin >= 0 && rows >= 0 && static_cast<hsize_t>(begin + rows) <= dims[0], InputError, path,
                ": reading rows ", begin, "..", begin + rows, " of /", name, ", which has ", dims[0]);
  const std::vector<hsize_t> start = {static_cast<hsize_t>(begin), 0};
  const std::vector<hsize_t> count = {static_cast<hsize_t>(rows), static_cast<hsize_t>(columns)};
  (void)ds;
  h5_check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
                  path + ": /" + name);
}

template <typename T>
std::vector<T> read_matrix_rows(hid_t file, const std::string& path, const std::string& name, int64_t begin,
                                int64_t rows) {
  const auto ds = h5_dataset(H5Dopen2(file, name.c_str(), H5P_DEFAULT), path + ": /" + name);
  const auto fspace = h5_space(H5Dget_space(ds), path + ": /" + name);
  SAETRAJ_CHECK(H5Sget_simple_extent_ndims(fspace) == 2, FormatError, path, ": /", name, " is not 2-dimensional");
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(fspace, dims, nullptr);
  std::vector<T> out(static_cast<size_t>(rows) * dims[1]);
  select_rows(ds, fspace, begin, rows, static_cast<int64_t>(dims[1]), path, name);
  if (out.empty()) return out;
  const hsize_t n = out.size();
  const auto mspace = h5_space(H5Screate_simple(1, &n, nullptr), path + ": /" + name);
  h5_check_status(H5Dread(ds, native_type<T>(), mspace, fspace, H5P_DEFAULT, out.data()),
                  path + ": reading /" + name);
  return out;
}

template <typename Record>
std::vector<Record> read_table_rows(hid_t file, const std::string& path, const std::string& name,
                                    const std::vector<std::string>& fields, int64_t begin, int64_t rows) {
  const auto [ds, n] = open_table(file, path, name, fields);
  (void)n;
  const auto fspace = h5_space(H5Dget_space(ds), path + ": /" + name);
  std::vector<Record> out(static_cast<size_t>(rows));
  select_rows(ds, fspace, begin, rows, 1, path, name);
  if (out.empty()) return out;
  const hsize_t count = out.size();
  const auto mspace = h5_space(H5Screate_simple(1, &count, nullptr), path + ": /" + name);
  h5_check_status(H5Dread(ds, table_type(fields), mspace, fspace, H5P_DEFAULT, out.data()),
                  path + ": reading /" + name);
  return out;
}

}  // namespace

SweepReader::GraphShape SweepReader::graph_shape(const std::string& group) const {
  const auto& path = impl_->path;
  const hid_t f = impl_->file;
  GraphShape s;
  s.top_t = graph_top_t(group);
  s.trajectories = open_table(f, path, group + "/trajectories", kTrajectoryFields).second;
  open_table(f, path, group + "/traced_edges", kTracedFields);
  const int64_t n = s.trajectories;
  if (link_exists(f, group + "/trajectory_heads")) {
    const auto c = open_checked(f, path, group + "/trajectory_heads", Kind::F32, {n, -1}, "trajectories x columns");
    s.head_columns = static_cast<int64_t>(c.dims[1]);
    s.head_column_names = attr_strings(c.ds, path, "/" + group + "/trajectory_heads", "columns");
    SAETRAJ_CHECK(static_cast<int64_t>(s.head_column_names.size()) == s.head_columns, FormatError, path,
                  ": attribute 'columns' of /", group, "/trajectory_heads names ", s.head_column_names.size(),
                  " columns for ", s.head_columns);
  }
  if (link_exists(f, group + "/trajectory_order")) {
    const auto c = open_checked(f, path, group + "/trajectory_order", Kind::I32, {n, 4}, "trajectories x 4");
    s.has_order = true;
    s.order_column_names = attr_strings(c.ds, path, "/" + group + "/trajectory_order", "columns");
    SAETRAJ_CHECK(s.order_column_names.size() == 4, FormatError, path, ": attribute 'columns' of /", group,
                  "/trajectory_order names ", s.order_column_names.size(), " columns for 4");
  }
  if (link_exists(f, group + "/trajectory_order_values")) {
    const auto c = open_checked(f, path, group + "/trajectory_order_values", Kind::F32, {n, -1},
                                "trajectories x columns");
    s.order_value_columns = static_cast<int64_t>(c.dims[1]);
    s.order_value_column_names = attr_strings(c.ds, path, "/" + group + "/trajectory_order_values", "columns");
    SAETRAJ_CHECK(static_cast<int64_t>(s.order_value_column_names.size()) == s.order_value_columns, FormatError,
                  path, ": attribute 'columns' of /", group, "/trajectory_order_values names ",
                  s.order_value_column_names.size(), " columns for ", s.order_value_columns);
  }
  return s;
}

std::vector<TrajectoryRecord> SweepReader::trajectory_rows(const std::string& group, int64_t begin,
                                                           int64_t rows) const {
  return read_table_rows<TrajectoryRecord>(impl_->file, impl_->path, group + "/trajectories", kTrajectoryFields,
                                           begin, rows);
}

std::vector<float> SweepReader::trajectory_heads_rows(const std::string& group, int64_t begin, int64_t rows) const {
  return read_matrix_rows<float>(impl_->file, impl_->path, group + "/trajectory_heads", begin, rows);
}

std::vector<int32_t> SweepReader::trajectory_order_rows(const std::string& group, int64_t begin,
                                                        int64_t rows) const {
  return read_matrix_rows<int32_t>(impl_->file, impl_->path, group + "/trajectory_order", begin, rows);
}

std::vector<float> SweepReader::trajectory_order_values_rows(const std::string& group, int64_t begin,
                                                             int64_t rows) const {
  return read_matrix_rows<float>(impl_->file, impl_->path, group + "/trajectory_order_values", begin, rows);
}

std::vector<TracedEdgeRecord> SweepReader::traced_edges(const std::string& group) const {
  return read_table<TracedEdgeRecord>(impl_->file, impl_->path, group + "/traced_edges", kTracedFields);
}

}  // namespace saetraj::output
