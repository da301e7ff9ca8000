#include "heidi/status.hpp"

#include <fcntl.h>

#include <cerrno>
#include <mutex>

#include "heidi/errors.hpp"
#include "heidi/fd.hpp"
#include "heidi/fsutil.hpp"

namespace heidi {

struct StatusWriter::Directory {
    std::mutex mutex;  // one write at a time: a reopen must not close an fd in use
    Fd fd;
};

StatusWriter::StatusWriter(std::string path, bool fsync)
    : path_(std::move(path)),
      dir_(fsutil::parent_dir(path_)),
      name_(fsutil::base_name(path_)),
      fsync_(fsync),
      directory_(std::make_unique<Directory>()) {}

StatusWriter::~StatusWriter() = default;
StatusWriter::StatusWriter(StatusWriter&&) noexcept = default;

void StatusWriter::write(const json::Value& value) const {
    std::string text = json::dumps(value);
    write_encoded(text);
}

void StatusWriter::write_encoded(std::string_view encoded) const {
    std::string data;
    data.reserve(encoded.size() + 1);
    data.append(encoded);
    data.push_back('\n');
    std::lock_guard lock(directory_->mutex);
    Fd& fd = directory_->fd;
    const auto reopen = [&](bool create) {
        fd.reset();
        if (create) fsutil::make_dirs(dir_);
        fd.reset(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!fd) throw OsError(errno, dir_);
    };
    if (!fd) {
        try {
            reopen(false);
        } catch (const OsError& error) {
            if (error.error_code() != ENOENT) throw;
            reopen(true);
        }
    }
    try {
        fsutil::atomic_write_at(fd.get(), dir_, name_, data, fsync_);
    } catch (const OsError& error) {
        // ENOENT: the directory open here was removed; write to the one at its path now.
        if (error.error_code() != ENOENT) throw;
        reopen(true);
        fsutil::atomic_write_at(fd.get(), dir_, name_, data, fsync_);
    }
}

}  // namespace heidi
