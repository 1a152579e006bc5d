#include "saetraj/output/h5.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

namespace saetraj::output {

void h5_quiet_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {

// The descriptions on the current error stack, innermost (most specific) first.
std::vector<std::string> h5_error_descriptions() {
  std::vector<std::string> out;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
        if (e && e->desc) static_cast<std::vector<std::string>*>(data)->emplace_back(e->desc);
        return 0;
      },
      &out);
  return out;
}

// HDF5's file drivers say why the OS refused: "..., errno = 28, error message = 'No space left on device', ...".
std::string os_message(const std::string& desc) {
  static const std::regex re(R"(error message = '([^']*)')");
  std::smatch m;
  return std::regex_search(desc, m, re) ? m[1].str() : std::string();
}

}  // namespace

std::string h5_error_summary() {
  const auto descs = h5_error_descriptions();
  for (const auto& d : descs) {
    const std::string os = os_message(d);
    if (!os.empty()) return os;
  }
  if (descs.empty()) return "";
  std::string s = sanitize_utf8(descs.front());
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s.size() > 200 ? s.substr(0, 200) + "..." : s;
}

hid_t h5_check(hid_t id, const std::string& what) {
  if (id < 0) {
    const std::string why = h5_error_summary();
    throw IoError(str(what, ": HDF5 call failed", why.empty() ? "" : " (" + why + ")"));
  }
  return id;
}

void h5_check_status(herr_t status, const std::string& what) { h5_check(status < 0 ? -1 : 0, what); }

H5Handle h5_file(hid_t id, const std::string& what) { return {h5_check(id, what), H5Fclose}; }
H5Handle h5_group(hid_t id, const std::string& what) { return {h5_check(id, what), H5Gclose}; }
H5Handle h5_dataset(hid_t id, const std::string& what) { return {h5_check(id, what), H5Dclose}; }
H5Handle h5_space(hid_t id, const std::string& what) { return {h5_check(id, what), H5Sclose}; }
H5Handle h5_type(hid_t id, const std::string& what) { return {h5_check(id, what), H5Tclose}; }
H5Handle h5_plist(hid_t id, const std::string& what) { return {h5_check(id, what), H5Pclose}; }
H5Handle h5_attr(hid_t id, const std::string& what) { return {h5_check(id, what), H5Aclose}; }

H5Handle h5_open_file(const std::string& path, unsigned flags, hid_t fapl, const std::string& advice) {
  namespace fs = std::filesystem;
  h5_quiet_errors();
  std::error_code ec;
  const auto status = fs::status(path, ec);
  SAETRAJ_CHECK(fs::exists(status), IoError, path, ": no such file; ", advice);
  SAETRAJ_CHECK(!fs::is_directory(status), IoError, path, " is a folder, not a file; ", advice);
  {
    std::ifstream probe(path, std::ios::binary);
    SAETRAJ_CHECK(probe.good(), IoError, path, ": cannot be read (", std::strerror(errno), "); ", advice);
  }
  // HDF5 would take an empty file for a new one when opened for writing.
  SAETRAJ_CHECK(fs::file_size(path, ec) != 0 || ec, FormatError, path, " is not an HDF5 file (it is empty); ",
                advice);
  const hid_t id = H5Fopen(path.c_str(), flags, fapl);
  if (id >= 0) return {id, H5Fclose};
  const auto descs = h5_error_descriptions();
  static const std::regex truncated(
      R"(truncated file: eof = (\d+), sblock->base_addr = (\d+), stored_eof = (\d+))");
  for (const auto& d : descs) {
    std::smatch m;
    if (std::regex_search(d, m, truncated)) {
      throw FormatError(str(path, " is truncated: ", m[1].str(), " of ", m[3].str(),
                            " bytes (an unfinished copy or a full disk cut it short); ", advice));
    }
    if (d.find("file signature not found") != std::string::npos) {
      throw FormatError(str(path, " is not an HDF5 file (no HDF5 signature); ", advice));
    }
  }
  const std::string why = h5_error_summary();
  throw IoError(str(path, " cannot be opened", why.empty() ? "" : ": " + why, "; ", advice));
}

template <> hid_t native_type<int32_t>() { return H5T_NATIVE_INT32; }
template <> hid_t native_type<int64_t>() { return H5T_NATIVE_INT64; }
template <> hid_t native_type<uint8_t>() { return H5T_NATIVE_UINT8; }
template <> hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t native_type<double>() { return H5T_NATIVE_DOUBLE; }

H5Handle vlen_utf8_type() {
  H5Handle t = h5_type(H5Tcopy(H5T_C_S1), "string type");
  h5_check_status(H5Tset_size(t, H5T_VARIABLE), "string type");
  h5_check_status(H5Tset_cset(t, H5T_CSET_UTF8), "string type");
  return t;
}

namespace {

H5Handle replace_attr(hid_t obj, const std::string& name, hid_t type, hid_t space) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  return h5_attr(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), "attribute " + name);
}

}  // namespace

void write_attr(hid_t obj, const std::string& name, const std::string& value) {
  const auto type = vlen_utf8_type();
  const auto space = h5_space(H5Screate(H5S_SCALAR), "attribute " + name);
  const auto attr = replace_attr(obj, name, type, space);
  const char* p = value.c_str();
  h5_check_status(H5Awrite(attr, type, &p), "attribute " + name);
}

void write_attr(hid_t obj, const std::string& name, int64_t value) {
  const auto space = h5_space(H5Screate(H5S_SCALAR), "attribute " + name);
  const auto attr = replace_attr(obj, name, H5T_STD_I64LE, space);
  h5_check_status(H5Awrite(attr, H5T_NATIVE_INT64, &value), "attribute " + name);
}

void write_attr(hid_t obj, const std::string& name, const std::vector<int32_t>& values) {
  const hsize_t n = values.size();
  const auto space = h5_space(H5Screate_simple(1, &n, nullptr), "attribute " + name);
  const auto attr = replace_attr(obj, name, H5T_STD_I32LE, space);
  h5_check_status(H5Awrite(attr, H5T_NATIVE_INT32, values.data()), "attribute " + name);
}

void write_attr(hid_t obj, const std::string& name, const std::vector<std::string>& values) {
  const auto type = vlen_utf8_type();
  const hsize_t n = values.size();
  const auto space = h5_space(H5Screate_simple(1, &n, nullptr), "attribute " + name);
  const auto attr = replace_attr(obj, name, type, space);
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  h5_check_status(H5Awrite(attr, type, ptrs.data()), "attribute " + name);
}

bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

std::string read_attr_string(hid_t obj, const std::string& name) {
  SAETRAJ_CHECK(has_attr(obj, name), FormatError, "missing attribute '", name, "'");
  const auto attr = h5_attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "attribute " + name);
  const auto file_type = h5_type(H5Aget_type(attr), "attribute " + name);
  SAETRAJ_CHECK(H5Tget_class(file_type) == H5T_STRING, FormatError, "attribute '", name, "' is not a string");
  if (H5Tis_variable_str(file_type) > 0) {
    const auto type = vlen_utf8_type();
    char* p = nullptr;
    h5_check_status(H5Aread(attr, type, &p), "attribute " + name);
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  const size_t size = H5Tget_size(file_type);
  std::string s(size, '\0');
  h5_check_status(H5Aread(attr, file_type, s.data()), "attribute " + name);
  s.resize(s.find('\0') == std::string::npos ? size : s.find('\0'));
  return s;
}

int64_t read_attr_int(hid_t obj, const std::string& name) {
  SAETRAJ_CHECK(has_attr(obj, name), FormatError, "missing attribute '", name, "'");
  const auto attr = h5_attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "attribute " + name);
  int64_t v = 0;
  h5_check_status(H5Aread(attr, H5T_NATIVE_INT64, &v), "attribute " + name);
  return v;
}

std::vector<int32_t> read_attr_ints(hid_t obj, const std::string& name) {
  SAETRAJ_CHECK(has_attr(obj, name), FormatError, "missing attribute '", name, "'");
  const auto attr = h5_attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "attribute " + name);
  const auto space = h5_space(H5Aget_space(attr), "attribute " + name);
  std::vector<int32_t> v(H5Sget_simple_extent_npoints(space));
  if (!v.empty()) h5_check_status(H5Aread(attr, H5T_NATIVE_INT32, v.data()), "attribute " + name);
  return v;
}

std::vector<std::string> read_attr_strings(hid_t obj, const std::string& name) {
  SAETRAJ_CHECK(has_attr(obj, name), FormatError, "missing attribute '", name, "'");
  const auto attr = h5_attr(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "attribute " + name);
  const auto space = h5_space(H5Aget_space(attr), "attribute " + name);
  const auto type = vlen_utf8_type();
  std::vector<char*> ptrs(H5Sget_simple_extent_npoints(space), nullptr);
  if (!ptrs.empty()) h5_check_status(H5Aread(attr, type, ptrs.data()), "attribute " + name);
  std::vector<std::string> out;
  for (char* p : ptrs) {
    out.emplace_back(p ? p : "");
    H5free_memory(p);
  }
  return out;
}

void write_strings(hid_t parent, const std::string& name, const std::vector<std::string>& values,
                   const std::vector<hsize_t>& dims) {
  const auto type = vlen_utf8_type();
  const auto space = h5_space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), name);
  H5Handle ds;
  if (link_exists(parent, name)) {
    ds = h5_dataset(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), name);
  } else {
    const auto lcpl = h5_plist(H5Pcreate(H5P_LINK_CREATE), name);
    H5Pset_create_intermediate_group(lcpl, 1);
    ds = h5_dataset(H5Dcreate2(parent, name.c_str(), type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT), name);
  }
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (!ptrs.empty()) h5_check_status(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), name);
}

std::vector<std::string> read_strings(hid_t parent, const std::string& name) {
  SAETRAJ_CHECK(link_exists(parent, name), FormatError, "missing dataset '", name, "'");
  const auto ds = h5_dataset(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), name);
  const auto space = h5_space(H5Dget_space(ds), name);
  const auto type = vlen_utf8_type();
  std::vector<char*> ptrs(H5Sget_simple_extent_npoints(space), nullptr);
  if (!ptrs.empty()) h5_check_status(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), name);
  std::vector<std::string> out;
  out.reserve(ptrs.size());
  for (char* p : ptrs) {
    out.emplace_back(p ? p : "");
    H5free_memory(p);
  }
  return out;
}

template <typename T>
void write_vector(hid_t parent, const std::string& name, const std::vector<T>& values) {
  const hsize_t n = values.size();
  const auto space = h5_space(H5Screate_simple(1, &n, nullptr), name);
  const auto lcpl = h5_plist(H5Pcreate(H5P_LINK_CREATE), name);
  H5Pset_create_intermediate_group(lcpl, 1);
  const auto ds = h5_dataset(H5Dcreate2(parent, name.c_str(), native_type<T>(), space, lcpl, H5P_DEFAULT, H5P_DEFAULT), name);
  if (n) h5_check_status(H5Dwrite(ds, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), name);
}

template <typename T>
std::vector<T> read_vector(hid_t parent, const std::string& name) {
  SAETRAJ_CHECK(link_exists(parent, name), FormatError, "missing dataset '", name, "'");
  const auto ds = h5_dataset(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), name);
  const auto space = h5_space(H5Dget_space(ds), name);
  std::vector<T> v(H5Sget_simple_extent_npoints(space));
  if (!v.empty()) h5_check_status(H5Dread(ds, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), name);
  return v;
}

template <typename T>
void write_matrix(hid_t parent, const std::string& name, const std::vector<T>& values, hsize_t rows,
                  hsize_t columns, const std::vector<std::string>& column_names) {
  SAETRAJ_CHECK(values.size() == rows * columns, IoError, "dataset '", name, "': ", values.size(),
                " values for [", rows, ", ", columns, "]");
  SAETRAJ_CHECK(column_names.empty() || column_names.size() == columns, IoError, "dataset '", name, "': ",
                column_names.size(), " column names for ", columns, " columns");
  const hsize_t dims[2] = {rows, columns};
  const auto space = h5_space(H5Screate_simple(2, dims, nullptr), name);
  const auto ds =
      h5_dataset(H5Dcreate2(parent, name.c_str(), native_type<T>(), space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), name);
  if (!values.empty()) h5_check_status(H5Dwrite(ds, native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), name);
  if (!column_names.empty()) write_attr(ds, "columns", column_names);
}

template void write_matrix<int32_t>(hid_t, const std::string&, const std::vector<int32_t>&, hsize_t, hsize_t,
                                    const std::vector<std::string>&);
template void write_matrix<float>(hid_t, const std::string&, const std::vector<float>&, hsize_t, hsize_t,
                                  const std::vector<std::string>&);
template void write_vector<int32_t>(hid_t, const std::string&, const std::vector<int32_t>&);
template void write_vector<int64_t>(hid_t, const std::string&, const std::vector<int64_t>&);
template void write_vector<uint8_t>(hid_t, const std::string&, const std::vector<uint8_t>&);
template void write_vector<float>(hid_t, const std::string&, const std::vector<float>&);
template std::vector<int32_t> read_vector<int32_t>(hid_t, const std::string&);
template std::vector<int64_t> read_vector<int64_t>(hid_t, const std::string&);
template std::vector<uint8_t> read_vector<uint8_t>(hid_t, const std::string&);
template std::vector<float> read_vector<float>(hid_t, const std::string&);

bool link_exists(hid_t parent, const std::string& path) {
  // Check each component so that a missing intermediate group is not an error.
  size_t pos = 0;
  while (true) {
    pos = path.find('/', pos + 1);
    const std::string prefix = path.substr(0, pos);
    if (!prefix.empty() && prefix != "/" && H5Lexists(parent, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

}  // namespace saetraj::output
