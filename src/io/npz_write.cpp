#include "saetraj/core/error.h"
#include "saetraj/io/npz.h"

#include "npy_header.h"

#include <zip.h>

#include <algorithm>
#include <cstring>
#include <set>

namespace saetraj::io {

namespace {

// One member's bytes (the .npy header, then the tensor's memory) handed to libzip through a source
// callback, so that large arrays are written without being copied into a buffer first.
struct MemberSource {
  std::string header;
  torch::Tensor data;  // contiguous float32
  uint64_t position = 0;
  zip_error_t error;

  MemberSource() { zip_error_init(&error); }
  ~MemberSource() { zip_error_fini(&error); }
  MemberSource(const MemberSource&) = delete;
  MemberSource& operator=(const MemberSource&) = delete;

  uint64_t size() const { return header.size() + static_cast<uint64_t>(data.numel()) * sizeof(float); }
};

zip_int64_t member_source(void* state, void* buffer, zip_uint64_t length, zip_source_cmd_t command) {
  auto* s = static_cast<MemberSource*>(state);
  switch (command) {
    case ZIP_SOURCE_OPEN:
      s->position = 0;
      return 0;
    case ZIP_SOURCE_READ: {
      const uint64_t n = std::min<uint64_t>(length, s->size() - s->position);
      auto* out = static_cast<char*>(buffer);
      for (uint64_t done = 0; done < n;) {
        const uint64_t at = s->position + done;
        const bool in_header = at < s->header.size();
        const char* from = in_header ? s->header.data() + at
                                     : static_cast<const char*>(s->data.data_ptr()) + (at - s->header.size());
        const uint64_t left_in_part = in_header ? s->header.size() - at : s->size() - at;
        const uint64_t take = std::min(n - done, left_in_part);
        std::memcpy(out + done, from, take);
        done += take;
      }
      s->position += n;
      return static_cast<zip_int64_t>(n);
    }
    case ZIP_SOURCE_CLOSE:
    case ZIP_SOURCE_FREE:
      return 0;
    case ZIP_SOURCE_STAT: {
      auto* st = ZIP_SOURCE_GET_ARGS(zip_stat_t, buffer, length, &s->error);
      if (!st) return -1;
      zip_stat_init(st);
      st->size = s->size();
      st->valid |= ZIP_STAT_SIZE;
      return sizeof(zip_stat_t);
    }
    case ZIP_SOURCE_ERROR:
      return zip_error_to_data(&s->error, buffer, length);
    case ZIP_SOURCE_SUPPORTS:
      return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE,
                                            ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE, -1);
    default:
      zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0);
      return -1;
  }
}

// Discards the archive (leaving no file behind) unless it was closed successfully.
struct ArchiveGuard {
  zip_t* archive;
  ~ArchiveGuard() {
    if (archive) zip_discard(archive);
  }
};

}  // namespace

void write_npz(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& arrays) {
  // libzip deletes an archive left with no entries instead of writing an empty one.
  SAETRAJ_CHECK(!arrays.empty(), InputError, "no arrays to write to ", path);
  std::set<std::string> names;
  // Declared before the guard: libzip reads the sources during zip_close, and may touch them in discard.
  std::vector<std::unique_ptr<MemberSource>> sources;
  for (const auto& [name, tensor] : arrays) {
    SAETRAJ_CHECK(!name.empty() && names.insert(name).second, InputError, "array name '", name,
                  "' is empty or given twice for ", path);
    auto s = std::make_unique<MemberSource>();
    s->data = tensor.detach().cpu().to(torch::kFloat32).contiguous();
    s->header = format_npy_header("<f4", s->data.sizes().vec());
    sources.push_back(std::move(s));
  }
  int code = 0;
  ArchiveGuard guard{zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code)};
  if (!guard.archive) {
    zip_error_t error;
    zip_error_init_with_code(&error, code);
    const std::string reason = zip_error_strerror(&error);
    zip_error_fini(&error);
    throw IoError(str("cannot create ", path, ": ", reason));
  }
  size_t i = 0;
  for (const auto& [name, tensor] : arrays) {
    zip_source_t* source = zip_source_function(guard.archive, member_source, sources[i++].get());
    SAETRAJ_CHECK(source, IoError, "cannot write ", path, ": ", zip_strerror(guard.archive));
    const zip_int64_t index = zip_file_add(guard.archive, (name + ".npy").c_str(), source, ZIP_FL_ENC_UTF_8);
    if (index < 0) {
      zip_source_free(source);
      throw IoError(str("cannot add '", name, ".npy' to ", path, ": ", zip_strerror(guard.archive)));
    }
    SAETRAJ_CHECK(zip_set_file_compression(guard.archive, index, ZIP_CM_STORE, 0) == 0, IoError,
                  "cannot write ", path, ": ", zip_strerror(guard.archive));
  }
  if (zip_close(guard.archive) != 0) {
    throw IoError(str("cannot write ", path, ": ", zip_strerror(guard.archive)));
  }
  guard.archive = nullptr;
}

}  // namespace saetraj::io
