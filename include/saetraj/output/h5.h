// RAII for HDF5 handles and small helpers for attributes and string datasets. Every failing call is
// turned into an IoError naming the file and object.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace saetraj::output {

class H5Handle {
 public:
  H5Handle() = default;
  H5Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  H5Handle(H5Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  H5Handle& operator=(H5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { reset(); }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Stops HDF5 from printing its own error stack on stderr: saetraj reports every failure itself, in one
// line. Called early in every process (main, after MPI is started) and again wherever a file is opened or
// created (tests do not go through main); calling it again is harmless.
void h5_quiet_errors();

// The current HDF5 error stack in one line (walked with H5Ewalk2): the operating system's reason when a file
// driver reports one ("No space left on device"), else the innermost error's description ("file signature
// not found"); "" when the stack is empty.
std::string h5_error_summary();

// Throws IoError("<what>: HDF5 call failed (<innermost HDF5 error>)") when id < 0.
hid_t h5_check(hid_t id, const std::string& what);
void h5_check_status(herr_t status, const std::string& what);

H5Handle h5_file(hid_t id, const std::string& what);
H5Handle h5_group(hid_t id, const std::string& what);
H5Handle h5_dataset(hid_t id, const std::string& what);
H5Handle h5_space(hid_t id, const std::string& what);
H5Handle h5_type(hid_t id, const std::string& what);
H5Handle h5_plist(hid_t id, const std::string& what);
H5Handle h5_attr(hid_t id, const std::string& what);

// Opens an existing HDF5 file (H5Fopen with `flags` and the file access list `fapl`), or throws one line
// that says what is wrong and ends with `advice`: "<path>: no such file; <advice>", "is a folder", "cannot
// be read" (IoError); "not an HDF5 file" (no signature, or empty), "truncated: 4096 of 10240 bytes" (the
// sizes HDF5 found and expected) (FormatError); else HDF5's innermost message (IoError).
H5Handle h5_open_file(const std::string& path, unsigned flags, hid_t fapl, const std::string& advice);

// Variable-length UTF-8 string type.
H5Handle vlen_utf8_type();

// Attributes on an object (file root, group or dataset).
void write_attr(hid_t obj, const std::string& name, const std::string& value);
void write_attr(hid_t obj, const std::string& name, int64_t value);
void write_attr(hid_t obj, const std::string& name, const std::vector<int32_t>& values);
void write_attr(hid_t obj, const std::string& name, const std::vector<std::string>& values);
bool has_attr(hid_t obj, const std::string& name);
std::string read_attr_string(hid_t obj, const std::string& name);
int64_t read_attr_int(hid_t obj, const std::string& name);
std::vector<int32_t> read_attr_ints(hid_t obj, const std::string& name);
std::vector<std::string> read_attr_strings(hid_t obj, const std::string& name);

// Whole-dataset helpers (serial use).
void write_strings(hid_t parent, const std::string& name, const std::vector<std::string>& values,
                   const std::vector<hsize_t>& dims);
std::vector<std::string> read_strings(hid_t parent, const std::string& name);
template <typename T>
void write_vector(hid_t parent, const std::string& name, const std::vector<T>& values);
template <typename T>
std::vector<T> read_vector(hid_t parent, const std::string& name);
// A [rows, columns] dataset from row-major `values` (rows * columns of them), with a "columns" attribute
// naming each column when `column_names` is not empty.
template <typename T>
void write_matrix(hid_t parent, const std::string& name, const std::vector<T>& values, hsize_t rows,
                  hsize_t columns, const std::vector<std::string>& column_names = {});
bool link_exists(hid_t parent, const std::string& path);

template <typename T>
hid_t native_type();

}  // namespace saetraj::output
