// Package tarx extracts tar streams into a directory without ever writing
// outside it: the guest uses it for what the host sends into /workspace,
// and the host for what the guest exports.
package tarx

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Limits bound an extraction.
type Limits struct {
	MaxBytes int64
	MaxFiles int64
	// StripSetID drops setuid and setgid bits: for trees that land on the
	// host from an untrusted guest.
	StripSetID bool
	// ConfineSymlinks refuses symlinks whose target leaves the
	// destination (absolute, or climbing above it with ".."): for trees
	// that land on the host, where a later reader might follow them.
	ConfineSymlinks bool
}

// Stats count what was extracted.
type Stats struct {
	Files int64
	Bytes int64
}

// Extract unpacks a tar stream into dest. Every name must be local;
// os.Root refuses anything that would resolve outside dest, including
// through a symlink an earlier entry made. Device nodes and FIFOs are
// refused.
func Extract(ctx context.Context, dest *os.Root, r io.Reader, lim Limits) (Stats, error) {
	var res Stats
	tr := tar.NewReader(r)
	type dirMeta struct {
		name string
		mode fs.FileMode
		t    time.Time
	}
	var dirs []dirMeta
	// Entries come directory by directory: each parent is resolved once
	// and files are made relative to it, which costs a few system calls
	// per file instead of a walk of the whole path each time.
	parents := &parentCache{dest: dest}
	defer parents.close()
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, err
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue // metadata for the archive (git archive writes one), not an entry
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if !fs.ValidPath(name) {
			return res, fmt.Errorf("entry %q is not a relative path inside the destination", h.Name)
		}
		res.Files++
		if res.Files > lim.MaxFiles {
			return res, fmt.Errorf("more than %d entries", lim.MaxFiles)
		}
		// FileInfo turns the tar's Unix mode bits (04000...) into Go's.
		mode := h.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch h.Typeflag {
		case tar.TypeDir:
			if fi, err := dest.Lstat(name); err == nil && !fi.IsDir() {
				parents.close()
				dest.Remove(name)
			}
			if err := dest.MkdirAll(name, 0o755); err != nil {
				return res, err
			}
			// Mode and time last: a read-only directory must still take
			// its entries.
			dirs = append(dirs, dirMeta{name, mode, h.ModTime})
		case tar.TypeReg:
			if lim.StripSetID {
				mode &^= fs.ModeSetuid | fs.ModeSetgid
			}
			dir, base, err := parents.get(name)
			if err != nil {
				return res, err
			}
			n, err := writeFile(dir, base, io.LimitReader(tr, lim.MaxBytes-res.Bytes+1), mode, h.ModTime)
			res.Bytes += n
			if err == nil && res.Bytes > lim.MaxBytes {
				err = fmt.Errorf("more than %d bytes", lim.MaxBytes)
			}
			if err != nil {
				return res, fmt.Errorf("%s: %w", name, err)
			}
		case tar.TypeSymlink:
			if lim.ConfineSymlinks && !linkStaysInside(name, h.Linkname) {
				return res, fmt.Errorf("symlink %q points outside the tree (to %q)", h.Name, h.Linkname)
			}
			if lim.ConfineSymlinks {
				// Its target is checked from where its name says it is.
				if dir, ok := underSymlink(dest, name); ok {
					return res, fmt.Errorf("symlink %q lies under %q, which is a symlink", h.Name, dir)
				}
			}
			if err := mkParent(dest, name); err != nil {
				return res, err
			}
			parents.close() // a directory may become a symlink
			dest.RemoveAll(name)
			if err := dest.Symlink(h.Linkname, name); err != nil {
				return res, err
			}
		case tar.TypeLink:
			target := path.Clean(strings.TrimPrefix(h.Linkname, "./"))
			if !fs.ValidPath(target) {
				return res, fmt.Errorf("hard link %q points outside the destination", h.Name)
			}
			if lim.ConfineSymlinks {
				// A hard link to a symlink is that symlink at another
				// place, from which its target may lead elsewhere.
				if fi, err := dest.Lstat(target); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
					return res, fmt.Errorf("hard link %q is to the symlink %q", h.Name, h.Linkname)
				}
			}
			if err := mkParent(dest, name); err != nil {
				return res, err
			}
			removeIfNotDir(dest, name)
			if err := dest.Link(target, name); err != nil {
				return res, err
			}
		default:
			return res, fmt.Errorf("entry %q is a device node, FIFO or other special file, which a workspace cannot hold", h.Name)
		}
	}
	// Directory modes and times last, deepest first: creating entries
	// inside changed the times, and needed write permission.
	for i := len(dirs) - 1; i >= 0; i-- {
		dest.Chmod(dirs[i].name, dirs[i].mode|fs.ModeDir)
		dest.Chtimes(dirs[i].name, dirs[i].t, dirs[i].t)
	}
	return res, nil
}

func mkParent(r *os.Root, name string) error {
	if dir := path.Dir(name); dir != "." {
		return r.MkdirAll(dir, 0o755)
	}
	return nil
}

func removeIfNotDir(r *os.Root, name string) {
	if fi, err := r.Lstat(name); err == nil && !fi.IsDir() {
		r.Remove(name)
	}
}

// linkStaysInside says whether a symlink at name with target resolves
// inside the tree. The check is lexical, which is only sound while no
// ".." follows a symlink: so ".." may only lead the target (after a
// component that may be a symlink it could climb out: "d/.." with
// d -> "."), and the caller checks that name's directories are real ones.
func linkStaysInside(name, target string) bool {
	if target == "" || path.IsAbs(target) {
		return false
	}
	down := false
	for _, part := range strings.Split(target, "/") {
		switch part {
		case "", ".":
		case "..":
			if down {
				return false
			}
		default:
			down = true
		}
	}
	return fs.ValidPath(path.Clean(path.Join(path.Dir(name), target)))
}

// underSymlink returns the first directory of name that is a symlink in r.
func underSymlink(r *os.Root, name string) (string, bool) {
	dir := path.Dir(name)
	if dir == "." {
		return "", false
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		if fi, err := r.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return p, true
		}
	}
	return "", false
}

// parentCache keeps the directories files were last created in, opened
// through dest (which refuses to leave it); files are then made relative
// to them with one name element each.
type parentCache struct {
	dest *os.Root
	dirs map[string]*os.File
}

// get returns the descriptor of name's parent directory (created if
// missing) and name's last element.
func (p *parentCache) get(name string) (int, string, error) {
	dir, base := path.Dir(name), path.Base(name)
	if f, ok := p.dirs[dir]; ok {
		return int(f.Fd()), base, nil
	}
	if dir != "." {
		if err := p.dest.MkdirAll(dir, 0o755); err != nil {
			return -1, "", err
		}
	}
	f, err := p.dest.Open(dir)
	if err != nil {
		return -1, "", err
	}
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		f.Close()
		return -1, "", fmt.Errorf("%s is not a directory", dir)
	}
	if p.dirs == nil || len(p.dirs) >= 32 {
		p.close()
		p.dirs = map[string]*os.File{}
	}
	p.dirs[dir] = f
	return int(f.Fd()), base, nil
}

func (p *parentCache) close() {
	for _, f := range p.dirs {
		f.Close()
	}
	p.dirs = nil
}

// writeFile creates base in the directory dirfd with r's bytes, mode and
// mtime, replacing a file or symlink of that name but never writing
// through one: base is a single name element opened with O_NOFOLLOW and
// O_EXCL. It uses plain system calls: a seed of many small files is
// bound by their count.
func writeFile(dirfd int, base string, r io.Reader, mode fs.FileMode, mtime time.Time) (int64, error) {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, base, flags, 0o600)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return 0, fmt.Errorf("a directory is in the way")
		}
		if err := unix.Unlinkat(dirfd, base, 0); err != nil {
			return 0, err
		}
		fd, err = unix.Openat(dirfd, base, flags, 0o600)
	}
	if err != nil {
		return 0, err
	}
	n, err := copyToFD(fd, r)
	if err == nil {
		err = unix.Fchmod(fd, unixMode(mode))
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	t := unix.NsecToTimespec(mtime.UnixNano())
	return n, unix.UtimesNanoAt(dirfd, base, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// copyToFD copies r to the file descriptor fd.
func copyToFD(fd int, r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		m, rerr := r.Read(buf)
		for off := 0; off < m; {
			w, err := unix.Write(fd, buf[off:m])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return n, err
			}
			off += w
			n += int64(w)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// unixMode converts Go's file mode bits to the kernel's.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}
