package flatten

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Paths are resolved below root as the guest will resolve them, with root as
// "/": a symlink is followed, an absolute target starts again at root, and
// ".." stops at root. Crossing a mount point is refused.
const resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

func (a *applier) openat2(rel string) (int, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveFlags}
	for range 64 {
		fd, err := unix.Openat2(a.root, rel, &how)
		// EAGAIN: a rename somewhere on the system raced with "..".
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// openDir returns an O_PATH descriptor of the directory at rel, a cleaned
// name relative to root ("." is root), resolved below root.
func (a *applier) openDir(rel string) (int, error) {
	if a.kernel {
		return a.openat2(rel)
	}
	return a.walk(rel)
}

// walk is openat2(RESOLVE_IN_ROOT) done in user space: one component at a
// time with O_PATH|O_NOFOLLOW from the descriptor of the last directory, a
// symlink's target pushed in front of the components left, ".." taken on the
// names of the directories walked, never on the host's.
func (a *applier) walk(rel string) (int, error) {
	cur, err := a.reopen(nil)
	if err != nil {
		return -1, err
	}
	var walked []string // the directories of cur below root, none a symlink
	todo := strings.Split(rel, "/")
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(walked) > 0 {
				walked = walked[:len(walked)-1]
				next, err := a.reopen(walked)
				unix.Close(cur)
				if err != nil {
					return -1, err
				}
				cur = next
			}
			continue
		}
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			unix.Close(cur)
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			unix.Close(cur)
			return -1, err
		}
		if uint64(st.Dev) != a.rootID.dev {
			unix.Close(next)
			unix.Close(cur)
			return -1, unix.EXDEV
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			unix.Close(cur)
			cur = next
			walked = append(walked, c)
		case unix.S_IFLNK:
			unix.Close(next)
			links++
			target, err := readlink(cur, c)
			if err == nil && links > maxSymlinks {
				err = unix.ELOOP
			}
			if err == nil && target == "" {
				err = unix.ENOENT
			}
			if err == nil && strings.HasPrefix(target, "/") {
				walked = walked[:0]
				var next int
				next, err = a.reopen(nil)
				if err == nil {
					unix.Close(cur)
					cur = next
				}
			}
			if err != nil {
				unix.Close(cur)
				return -1, err
			}
			todo = append(strings.Split(target, "/"), todo...)
		default:
			unix.Close(next)
			unix.Close(cur)
			return -1, unix.ENOTDIR
		}
	}
	return cur, nil
}

// reopen opens root/walked, where each name was found to be a directory.
func (a *applier) reopen(walked []string) (int, error) {
	cur, err := unix.Openat(a.root, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, c := range walked {
		// O_NOFOLLOW|O_DIRECTORY: a symlink here fails with ENOTDIR.
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

func readlink(dirfd int, name string) (string, error) {
	buf := make([]byte, maxLinkTarget+1)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	if n > maxLinkTarget {
		return "", unix.ENAMETOOLONG
	}
	return string(buf[:n]), nil
}

// parentDir opens the directory dir of the entry name, resolved below root.
// With create, missing directories are made (mode 0755), as the guest's view
// needs them; a symlink that leads nowhere is refused rather than created
// through.
func (a *applier) parentDir(name, dir string, create bool) (int, error) {
	fd, err := a.openDir(dir)
	if err == nil {
		return fd, nil
	}
	if !create || err != unix.ENOENT {
		return -1, resolveErr(name, err)
	}
	// Each prefix is resolved again from root, so a symlink among the
	// components is followed the same way as in one call.
	prev, err := a.openDir(".")
	if err != nil {
		return -1, resolveErr(name, err)
	}
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		fd, err := a.openDir(dir[:i])
		if err == unix.ENOENT {
			fd, err = a.mkdirMissing(name, prev, dir[strings.LastIndexByte(dir[:i], '/')+1:i])
		} else if err != nil {
			err = resolveErr(name, err)
		}
		unix.Close(prev)
		if err != nil {
			return -1, err
		}
		prev = fd
	}
	return prev, nil
}

// mkdirMissing creates the directory base in parent for a name whose
// directory is missing.
func (a *applier) mkdirMissing(name string, parent int, base string) (int, error) {
	var st unix.Stat_t
	switch err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err {
	case nil:
		// It is there but does not resolve: a symlink to nothing.
		return -1, refused(name, "a symlink in the path leads nowhere inside root")
	case unix.ENOENT:
	default:
		return -1, failed(name, "creating parent directories", err)
	}
	pid, depth, err := a.mark(name, parent)
	if err != nil {
		return -1, err
	}
	if depth+1 > maxDepth {
		return -1, &EntryError{Name: name, Rule: fmt.Sprintf("deeper than %d directories below root", maxDepth), Err: ErrLimit}
	}
	if err := a.count(name); err != nil {
		return -1, err
	}
	if err := unix.Mkdirat(parent, base, 0o700); err != nil {
		return -1, failed(name, "creating parent directories", err)
	}
	e := entryID{pid, base}
	a.created[e] = struct{}{}
	fd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, failed(name, "creating parent directories", err)
	}
	defer unix.Close(fd)
	id, err := statID(fd)
	if err == nil {
		err = unix.Fchmod(fd, 0o755) // whatever the umask
	}
	if err != nil {
		return -1, failed(name, "creating parent directories", err)
	}
	a.depth[id] = depth + 1
	p, err := unix.Openat(parent, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, failed(name, "creating parent directories", err)
	}
	return p, nil
}

func resolveErr(name string, err error) error {
	switch err {
	case unix.ENOENT:
		// A missing directory, or a symlink to nothing: the caller decides.
		return failed(name, "resolving the directory", err)
	case unix.ELOOP:
		return refused(name, "symlinks in the path loop or nest too deep")
	case unix.ENOTDIR:
		return refused(name, "a component of the path is not a directory")
	case unix.EXDEV:
		return refused(name, "the path crosses a mount point")
	}
	return failed(name, "resolving the directory", err)
}

// mark records the directory fd, and all directories above it up to root,
// as touched by this layer, and returns its identity and depth below root.
// The depth is that of the real tree, whatever names led there.
func (a *applier) mark(name string, fd int) (fileID, int, error) {
	id, err := statID(fd)
	if err != nil {
		return id, 0, failed(name, "inspecting the directory", err)
	}
	if d, ok := a.depth[id]; ok {
		return id, d, nil
	}
	// Walk up through ".." (real directories, never symlinks) until a known
	// directory; root is always known, and nothing above it is looked at.
	chain := []fileID{id}
	cur, base := -1, 0
	for from := fd; ; {
		up, err := unix.Openat(from, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if cur >= 0 {
			unix.Close(cur)
		}
		if err != nil {
			return id, 0, failed(name, "finding the depth of the directory", err)
		}
		cur, from = up, up
		uid, err := statID(up)
		if err != nil {
			unix.Close(cur)
			return id, 0, failed(name, "finding the depth of the directory", err)
		}
		if d, ok := a.depth[uid]; ok {
			base = d
			break
		}
		if uid == chain[len(chain)-1] || uid.dev != a.rootID.dev {
			unix.Close(cur)
			return id, 0, failed(name, "finding the depth of the directory", fmt.Errorf("directory is not below root"))
		}
		chain = append(chain, uid)
		if len(chain) > maxDepth {
			unix.Close(cur)
			return id, 0, &EntryError{Name: name, Rule: fmt.Sprintf("deeper than %d directories below root", maxDepth), Err: ErrLimit}
		}
	}
	unix.Close(cur)
	for i := len(chain) - 1; i >= 0; i-- {
		base++
		a.depth[chain[i]] = base
	}
	return id, a.depth[id], nil
}
