#include "atomic_file.h"

#include "saetraj/core/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace saetraj::io {

AtomicFile::AtomicFile(std::string path)
    : path_(std::move(path)), temp_path_(path_ + ".tmp" + std::to_string(::getpid())) {
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SAETRAJ_CHECK(fd_ >= 0, IoError, "cannot create ", temp_path_, " (to write ", path_,
                "): ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd_, p + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    SAETRAJ_CHECK(n > 0, IoError, "cannot write ", path_, ": ", n < 0 ? std::strerror(errno) : "no progress",
                  " (wrote ", done, " of ", size, " bytes of a block)");
    done += static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  const int fd = fd_;
  fd_ = -1;
  // close() can report a deferred write error (NFS, quota): the file is not complete then.
  SAETRAJ_CHECK(::close(fd) == 0, IoError, "cannot write ", path_, ": ", std::strerror(errno));
  SAETRAJ_CHECK(std::rename(temp_path_.c_str(), path_.c_str()) == 0, IoError, "cannot rename ", temp_path_,
                " to ", path_, ": ", std::strerror(errno));
  committed_ = true;
}

}  // namespace saetraj::io
