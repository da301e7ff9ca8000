// Small POSIX file helpers shared by the journal and the status writer.
// Failures throw heidi::OsError(errno, path).
#pragma once

#include <string>
#include <string_view>

namespace heidi::fsutil {

// mkdir -p.
void make_dirs(const std::string& path);
std::string parent_dir(const std::string& path);  // "." when there is none
std::string base_name(const std::string& path);
bool exists(const std::string& path) noexcept;
bool is_dir(const std::string& path) noexcept;
// Whole file (throws on error).
std::string read_file(const std::string& path);
// write() all bytes, retrying on EINTR and short writes.
void write_all(int fd, std::string_view data, const std::string& path_for_errors);
void fsync_dir(const std::string& dir);
// Write to a unique "<name>.<pid>.<counter>.tmp" beside path, fsync, rename over path,
// fsync the directory. A reader sees the old file or the new one, never a mix.
// fsync=false (HEIDI_FSYNC=0, benchmarks only) keeps the rename and skips both fsyncs.
void atomic_write(const std::string& path, std::string_view data, bool fsync = true);
// atomic_write of file `name` in an open directory (dir_fd; dir is its path, for errors):
// no path is looked up again, and the directory is synced through dir_fd.
void atomic_write_at(int dir_fd, const std::string& dir, const std::string& name, std::string_view data,
                     bool fsync = true);

}  // namespace heidi::fsutil
