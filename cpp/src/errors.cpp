#include "heidi/errors.hpp"

#include <cstring>

namespace heidi {

OsError::OsError(int error_code, std::string filename)
    : std::runtime_error(std::string(std::strerror(error_code)) + ": " + filename),
      error_code_(error_code),
      filename_(std::move(filename)) {}

}  // namespace heidi
