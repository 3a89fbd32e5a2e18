// SHA-256 (FIPS 180-4) of a file, hex encoded: the payload check of the manifest.
#pragma once

#include <string>

namespace mlffc {

// Throws mlffc::Error when the file cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace mlffc
