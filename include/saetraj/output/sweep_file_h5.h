// Sweep files at the HDF5 level, for output/ itself and for tests that inspect files directly: everything
// else reads through output::SweepReader (sweep_reader.h) and writes through sweep_file.h.
#pragma once

#include <string>

#include "saetraj/output/h5.h"

namespace saetraj::output {

// Serial. Opens an existing sweep file, or throws one line that says what is wrong and ends with `advice`:
// no such file, a folder, not an HDF5 file, truncated (h5_open_file), or an HDF5 file that is not a sweep
// (FormatError), or of another format version.
H5Handle open_sweep_file(const std::string& path, bool writable, const std::string& advice);

}  // namespace saetraj::output
