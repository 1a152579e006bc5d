#include "saetraj/io/npz.h"

#include "npy_header.h"
#include "reader_support.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"

#include <zip.h>

#include <algorithm>
#include <cstring>

namespace saetraj::io {

namespace {

constexpr char kSuffix[] = ".npy";
constexpr size_t kSuffixBytes = 4;

std::string zip_code_message(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

// An open archive member; closed on every path out.
class MemberReader {
 public:
  MemberReader(zip_t* archive, uint64_t index, const std::string& where) : where_(where) {
    file_ = zip_fopen_index(archive, index, 0);
    SAETRAJ_CHECK(file_, FormatError, "cannot read ", where, ": ", zip_strerror(archive));
  }
  ~MemberReader() { zip_fclose(file_); }
  MemberReader(const MemberReader&) = delete;
  MemberReader& operator=(const MemberReader&) = delete;

  // Reads up to `size` bytes, fewer only at the end of the member. Corrupt data (a CRC mismatch) is
  // reported by libzip when the end is reached.
  uint64_t read(void* out, uint64_t size) {
    uint64_t done = 0;
    while (done < size) {
      // Bounded chunks: zip_fread's count is signed on return.
      const uint64_t chunk = std::min<uint64_t>(size - done, uint64_t{1} << 30);
      const zip_int64_t n = zip_fread(file_, static_cast<char*>(out) + done, chunk);
      SAETRAJ_CHECK(n >= 0, FormatError, where_, " is corrupt or truncated: ", zip_file_strerror(file_));
      if (n == 0) break;
      done += static_cast<uint64_t>(n);
    }
    return done;
  }

 private:
  std::string where_;
  zip_file_t* file_ = nullptr;
};

std::string member_where(const std::string& entry, const std::string& path) {
  return str("member '", entry, "' of ", path);
}

}  // namespace

void NpzFile::ZipCloser::operator()(::zip* archive) const { zip_discard(archive); }

NpzFile NpzFile::open(const std::string& path) {
  int code = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (!archive) {
    const std::string reason = zip_code_message(code);
    switch (code) {
      case ZIP_ER_NOENT:
      case ZIP_ER_OPEN:
      case ZIP_ER_READ:
      case ZIP_ER_SEEK:
      case ZIP_ER_MEMORY:
        throw IoError(str("cannot open ", path, ": ", reason));
      case ZIP_ER_NOZIP:
        throw FormatError(
            str(path, " is not a zip archive (an .npz is one), or it is truncated or corrupt: ", reason));
      default:
        throw FormatError(str(path, " is a corrupt zip archive: ", reason));
    }
  }
  NpzFile npz;
  npz.path_ = path;
  npz.zip_.reset(archive);

  const zip_int64_t entries = zip_get_num_entries(archive, 0);
  for (zip_int64_t i = 0; i < entries; ++i) {
    zip_stat_t st;
    SAETRAJ_CHECK(
        zip_stat_index(archive, i, 0, &st) == 0 && (st.valid & ZIP_STAT_NAME) && (st.valid & ZIP_STAT_SIZE),
        FormatError, path, " is a corrupt zip archive: entry ", i, ": ", zip_strerror(archive));
    const std::string entry = st.name;
    if (entry.size() <= kSuffixBytes ||
        entry.compare(entry.size() - kSuffixBytes, kSuffixBytes, kSuffix) != 0) {
      continue;  // numpy only ever writes .npy members; anything else is not an array
    }
    const std::string name = entry.substr(0, entry.size() - kSuffixBytes);
    const std::string where = member_where(entry, path);
    SAETRAJ_CHECK(!npz.members_.count(name), FormatError, path, " holds member '", entry, "' twice");
    // The uncompressed size decides the allocation in load(): refuse a size the stored bytes cannot hold
    // before anything is allocated (deflate expands at most ~1032:1; a stored member is its own size).
    if ((st.valid & ZIP_STAT_COMP_SIZE) && (st.valid & ZIP_STAT_COMP_METHOD)) {
      const uint64_t limit = st.comp_method == ZIP_CM_STORE ? st.comp_size : st.comp_size * 1100 + 1024;
      SAETRAJ_CHECK(st.size <= limit, FormatError, where, " claims ", st.size, " bytes uncompressed from ",
                    st.comp_size, " stored bytes, which its compression cannot produce (corrupt archive)");
    }

    MemberReader file(archive, i, where);
    uint8_t first[12];
    const uint64_t got = file.read(first, std::min<uint64_t>(sizeof first, st.size));
    const NpyPreamble preamble = parse_npy_preamble(first, got, where);
    SAETRAJ_CHECK(preamble.preamble_bytes + preamble.dict_bytes <= st.size, FormatError, where,
                  " ends inside its .npy header (", preamble.dict_bytes,
                  " bytes of header announced, member is ", st.size, " bytes)");
    std::string dict(preamble.dict_bytes, '\0');
    const size_t already = got - preamble.preamble_bytes;  // dict bytes read along with the preamble
    std::memcpy(dict.data(), first + preamble.preamble_bytes, std::min<size_t>(already, dict.size()));
    if (dict.size() > already) {
      SAETRAJ_CHECK(file.read(dict.data() + already, dict.size() - already) == dict.size() - already,
                    FormatError, where, " ends inside its .npy header");
    }
    const NpyHeader header = parse_npy_dict(dict, where);

    Member m;
    m.index = static_cast<uint64_t>(i);
    m.header_bytes = preamble.preamble_bytes + preamble.dict_bytes;
    m.data_bytes = header.data_bytes;
    m.dtype = header.dtype;
    m.shape = header.shape;
    const uint64_t stored = st.size - m.header_bytes;
    SAETRAJ_CHECK(stored >= m.data_bytes, FormatError, where, " has short data: ", stored,
                  " bytes, but shape ", shape_str(m.shape), " of ", header.descr, " needs ", m.data_bytes);
    SAETRAJ_CHECK(stored == m.data_bytes, FormatError, where, " has ", stored, " bytes of data, but shape ",
                  shape_str(m.shape), " of ", header.descr, " needs ", m.data_bytes);
    npz.members_[name] = m;
  }
  return npz;
}

std::vector<std::string> NpzFile::names() const {
  std::vector<std::string> out;
  for (const auto& entry : members_) out.push_back(entry.first);
  return out;
}

const NpzFile::Member& NpzFile::member(const std::string& name) const {
  const auto it = members_.find(name);
  if (it == members_.end()) throw FormatError(missing_tensor_message(name, path_, names()));
  return it->second;
}

const std::vector<int64_t>& NpzFile::shape(const std::string& name) const { return member(name).shape; }

torch::Tensor NpzFile::load(const std::string& name, torch::ScalarType as) const {
  const Member& m = member(name);
  const std::string where = member_where(name + kSuffix, path_);
  check_convertible(m.dtype, as, where);
  torch::Tensor out = torch::empty(m.shape, torch::TensorOptions().dtype(m.dtype));

  MemberReader file(zip_.get(), m.index, where);
  std::string header(m.header_bytes, '\0');  // already validated by open()
  SAETRAJ_CHECK(file.read(header.data(), header.size()) == header.size(), FormatError, where,
                " ends inside its .npy header");
  const uint64_t got = file.read(out.data_ptr(), m.data_bytes);
  SAETRAJ_CHECK(got == m.data_bytes, FormatError, where, " has short data: ", got, " bytes, but shape ",
                shape_str(m.shape), " needs ", m.data_bytes);
  // Reading past the end makes libzip compare the CRC: a flipped bit in the data is reported here.
  char extra;
  SAETRAJ_CHECK(file.read(&extra, 1) == 0, FormatError, where, " holds more data than its shape ",
                shape_str(m.shape), " needs");
  return m.dtype == as ? out : out.to(as);
}

torch::Tensor NpzFile::load(const std::string& name, const std::vector<int64_t>& expected_shape,
                            torch::ScalarType as) const {
  check_shape(shape(name), expected_shape, name, path_);
  return load(name, as);
}

}  // namespace saetraj::io
