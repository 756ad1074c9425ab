package flatten

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// entry applies one tar entry; r reads its content.
func (a *applier) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, rule := cleanName(hdr.Name)
	if rule != "" {
		return refused(hdr.Name, "%s", rule)
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return refused(hdr.Name, "the root can only be a directory")
		}
		return a.rootDir(hdr)
	}
	dir, base := splitName(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(hdr.Name, dir, base)
	}
	switch hdr.Typeflag {
	case tar.TypeGNUSparse: // the reader reads the holes as zeros
		hdr.Typeflag = tar.TypeReg
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
	case tar.TypeChar, tar.TypeBlock:
		a.skip(hdr.Name, "device node not created (the guest's /dev is a devtmpfs)")
		return nil
	case tar.TypeFifo:
		a.skip(hdr.Name, "FIFO not created")
		return nil
	default:
		a.skip(hdr.Name, fmt.Sprintf("entry type %q not supported", hdr.Typeflag))
		return nil
	}
	if hdr.Uid < 0 || hdr.Uid > maxID || hdr.Gid < 0 || hdr.Gid > maxID {
		return refused(hdr.Name, "owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}

	parent, err := a.parentDir(hdr.Name, dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	pid, depth, err := a.mark(hdr.Name, parent)
	if err != nil {
		return err
	}
	if depth+1 > maxDepth {
		return &EntryError{Name: hdr.Name, Rule: fmt.Sprintf("deeper than %d directories below root", maxDepth), Err: ErrLimit}
	}
	e := entryID{pid, base}

	switch hdr.Typeflag {
	case tar.TypeDir:
		return a.dir(hdr, name, parent, e, depth+1)
	case tar.TypeReg:
		err = a.file(ctx, hdr, parent, e, depth+1, r)
	case tar.TypeSymlink:
		err = a.symlink(hdr, parent, e, depth+1)
	case tar.TypeLink:
		err = a.link(hdr, parent, e, depth+1)
	}
	if err == nil {
		a.created[e] = struct{}{}
	}
	return err
}

// maxID is the largest uid or gid: (uid_t)-1 means "unchanged" to chown.
const maxID = 1<<32 - 2

// splitName splits a cleaned name (not ".") into its directory ("." at the
// top) and its last component.
func splitName(name string) (dir, base string) {
	dir, base = path.Split(name)
	if dir == "" {
		return ".", base
	}
	return dir[:len(dir)-1], base
}

// rootDir applies a directory entry for root itself.
func (a *applier) rootDir(hdr *tar.Header) error {
	if hdr.Uid < 0 || hdr.Uid > maxID || hdr.Gid < 0 || hdr.Gid > maxID {
		return refused(hdr.Name, "owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	if err := a.setOwnerMode(a.root, hdr, true); err != nil {
		return failed(hdr.Name, "setting owner and mode", err)
	}
	a.deferTimes(".", a.rootID, hdr)
	return nil
}

// replace removes whatever is at e before an entry of another kind takes
// its place. A directory that stays a directory is kept (keepDir).
func (a *applier) replace(name string, parent int, e entryID, depth int, keepDir bool) (exists bool, err error) {
	var st unix.Stat_t
	switch err := unix.Fstatat(parent, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err {
	case nil:
	case unix.ENOENT:
		return false, nil
	default:
		return false, failed(name, "inspecting what is there", err)
	}
	if keepDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return true, nil
	}
	if err := a.removeAt(parent, e.name, depth); err != nil {
		return false, failed(name, "removing what is there", err)
	}
	return false, nil
}

func (a *applier) dir(hdr *tar.Header, name string, parent int, e entryID, depth int) error {
	exists, err := a.replace(hdr.Name, parent, e, depth, true)
	if err != nil {
		return err
	}
	if !exists {
		if err := unix.Mkdirat(parent, e.name, 0o700); err != nil {
			return failed(hdr.Name, "creating directory", err)
		}
		a.created[e] = struct{}{}
	}
	fd, err := unix.Openat(parent, e.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return failed(hdr.Name, "opening directory", err)
	}
	defer unix.Close(fd)
	id, err := statID(fd)
	if err != nil {
		return failed(hdr.Name, "opening directory", err)
	}
	a.depth[id] = depth
	if err := a.setOwnerMode(fd, hdr, true); err != nil {
		return failed(hdr.Name, "setting owner and mode", err)
	}
	a.deferTimes(name, id, hdr)
	return nil
}

func (a *applier) file(ctx context.Context, hdr *tar.Header, parent int, e entryID, depth int, r io.Reader) error {
	if left := a.opts.MaxBytes - a.stats.Bytes; hdr.Size > left {
		return &EntryError{Name: hdr.Name, Rule: fmt.Sprintf("%d bytes exceed the %d left of %d", hdr.Size, left, a.opts.MaxBytes), Err: ErrLimit}
	}
	if _, err := a.replace(hdr.Name, parent, e, depth, false); err != nil {
		return err
	}
	fd, err := unix.Openat(parent, e.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return failed(hdr.Name, "creating file", err)
	}
	err = a.fill(ctx, fd, hdr, r)
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = failed(hdr.Name, "closing file", cerr)
	}
	if err != nil {
		return err
	}
	return a.setTimes(hdr, parent, e.name)
}

// fill writes the content, owner, mode and capabilities of a new file.
func (a *applier) fill(ctx context.Context, fd int, hdr *tar.Header, r io.Reader) error {
	if a.buf == nil {
		a.buf = make([]byte, 1<<20)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := r.Read(a.buf)
		for b := a.buf[:n]; len(b) > 0; {
			w, err := unix.Write(fd, b)
			if err == unix.EINTR {
				continue
			}
			if err == nil && w == 0 {
				err = io.ErrShortWrite
			}
			if err != nil {
				return failed(hdr.Name, "writing file", err)
			}
			b = b[w:]
			a.stats.Bytes += int64(w)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// A body shorter than its header claims is io.ErrUnexpectedEOF.
			return failed(hdr.Name, "reading file content", rerr)
		}
	}
	// chown clears setuid and setgid, and writes clear capabilities: owner,
	// then mode, then capabilities.
	if err := a.setOwnerMode(fd, hdr, false); err != nil {
		return failed(hdr.Name, "setting owner and mode", err)
	}
	v, ok := hdr.PAXRecords["SCHILY.xattr.security.capability"]
	if !ok {
		return nil
	}
	if !a.owner {
		a.skip(hdr.Name, "security.capability not applied: not running as root")
		return nil
	}
	if len(v) > maxXattrLen {
		a.skip(hdr.Name, "security.capability too long: not applied")
		return nil
	}
	switch err := unix.Fsetxattr(fd, "security.capability", []byte(v), 0); err {
	case nil:
	case unix.EINVAL, unix.EPERM, unix.EOPNOTSUPP:
		a.skip(hdr.Name, "security.capability not applied: "+err.Error())
	default:
		return failed(hdr.Name, "setting security.capability", err)
	}
	return nil
}

func (a *applier) symlink(hdr *tar.Header, parent int, e entryID, depth int) error {
	switch t := hdr.Linkname; {
	case t == "":
		return refused(hdr.Name, "symlink with an empty target")
	case len(t) > maxLinkTarget:
		return refused(hdr.Name, "symlink target longer than %d bytes", maxLinkTarget)
	case strings.IndexByte(t, 0) >= 0:
		return refused(hdr.Name, "symlink target contains a NUL byte")
	}
	if _, err := a.replace(hdr.Name, parent, e, depth, false); err != nil {
		return err
	}
	if err := unix.Symlinkat(hdr.Linkname, parent, e.name); err != nil {
		return failed(hdr.Name, "creating symlink", err)
	}
	if a.owner {
		if err := unix.Fchownat(parent, e.name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return failed(hdr.Name, "setting owner", err)
		}
	}
	return a.setTimes(hdr, parent, e.name)
}

func (a *applier) link(hdr *tar.Header, parent int, e entryID, depth int) error {
	target, rule := cleanName(hdr.Linkname)
	if rule != "" {
		return refused(hdr.Name, "hard link target %s: %s", quote(hdr.Linkname), rule)
	}
	if target == "." {
		return refused(hdr.Name, "hard link to the root directory")
	}
	tdir, tbase := splitName(target)
	if strings.HasPrefix(tbase, whiteoutPrefix) {
		return refused(hdr.Name, "hard link to a whiteout")
	}
	tparent, err := a.parentDir(hdr.Name, tdir, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return refused(hdr.Name, "hard link target %s does not exist", quote(hdr.Linkname))
		}
		return err
	}
	defer unix.Close(tparent)
	var st unix.Stat_t
	switch err := unix.Fstatat(tparent, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == unix.ENOENT:
		return refused(hdr.Name, "hard link target %s does not exist", quote(hdr.Linkname))
	case err != nil:
		return failed(hdr.Name, "inspecting hard link target", err)
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return refused(hdr.Name, "hard link to a directory")
	}
	var old unix.Stat_t
	if err := unix.Fstatat(parent, e.name, &old, unix.AT_SYMLINK_NOFOLLOW); err == nil &&
		old.Dev == st.Dev && old.Ino == st.Ino {
		return nil // already that file
	}
	if _, err := a.replace(hdr.Name, parent, e, depth, false); err != nil {
		return err
	}
	if err := unix.Linkat(tparent, tbase, parent, e.name, 0); err != nil {
		return failed(hdr.Name, "creating hard link", err)
	}
	return nil
}

// setOwnerMode applies owner (as root) and permission bits to an open file.
func (a *applier) setOwnerMode(fd int, hdr *tar.Header, isDir bool) error {
	if a.owner {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	mode := uint32(hdr.Mode) & 0o7777
	if isDir && !a.owner {
		mode |= 0o700 // so that this and later layers can write into it
	}
	return unix.Fchmod(fd, mode)
}

func (a *applier) deferTimes(name string, id fileID, hdr *tar.Header) {
	if hdr.ModTime.IsZero() {
		return
	}
	atime, mtime := times(hdr)
	a.dirTimes = append(a.dirTimes, dirTime{name: name, id: id, atime: atime, mtime: mtime})
}

// setTimes sets the times of a new file or symlink, not following it.
func (a *applier) setTimes(hdr *tar.Header, parent int, base string) error {
	if hdr.ModTime.IsZero() {
		return nil
	}
	atime, mtime := times(hdr)
	if err := unix.UtimesNanoAt(parent, base, []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return failed(hdr.Name, "setting times", err)
	}
	return nil
}

func times(hdr *tar.Header) (atime, mtime unix.Timespec) {
	mtime = timespec(hdr.ModTime)
	atime = mtime
	if !hdr.AccessTime.IsZero() {
		atime = timespec(hdr.AccessTime)
	}
	return atime, mtime
}

// timespec converts t, clamped to what ext4 can hold (1901 to 2446).
func timespec(t time.Time) unix.Timespec {
	const lo, hi = -1 << 31, 1<<34 - 1
	s, ns := t.Unix(), int64(t.Nanosecond())
	switch {
	case s < lo:
		s, ns = lo, 0
	case s > hi:
		s, ns = hi, 0
	}
	return unix.Timespec{Sec: s, Nsec: ns}
}

// finish sets the times of the directories of the layer, deepest last
// written first, skipping those that a later entry removed or replaced.
func (a *applier) finish() error {
	for i := len(a.dirTimes) - 1; i >= 0; i-- {
		dt := a.dirTimes[i]
		ts := []unix.Timespec{dt.atime, dt.mtime}
		if dt.name == "." {
			if err := unix.UtimesNanoAt(a.root, ".", ts, 0); err != nil {
				return failed(dt.name, "setting times", err)
			}
			continue
		}
		dir, base := splitName(dt.name)
		parent, err := a.openDir(dir)
		if err != nil {
			continue // removed since
		}
		var st unix.Stat_t
		if unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			idOf(&st) == dt.id && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
		unix.Close(parent)
		if err != nil {
			return failed(dt.name, "setting times", err)
		}
	}
	return nil
}

func statID(fd int) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileID{}, err
	}
	return idOf(&st), nil
}

func idOf(st *unix.Stat_t) fileID { return fileID{uint64(st.Dev), uint64(st.Ino)} }
