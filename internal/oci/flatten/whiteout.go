package flatten

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// whiteout applies the whiteout entry name, dir/base. A whiteout hides what
// lower layers put there, never what this layer wrote (OCI image spec,
// "Whiteouts"), whatever the order of the entries in the layer:
//
//   - ".wh.NAME" removes NAME unless this layer created it; a directory this
//     layer also wrote into keeps what this layer wrote.
//   - ".wh..wh..opq" empties dir of everything this layer did not write.
func (a *applier) whiteout(name, dir, base string) error {
	var target string
	switch {
	case base == opaqueMarker:
	case len(base) >= len(whiteoutMeta) && base[:len(whiteoutMeta)] == whiteoutMeta:
		a.skip(name, "aufs metadata ignored")
		return nil
	default:
		target = base[len(whiteoutPrefix):]
		if target == "" || target == "." || target == ".." {
			return refused(name, "whiteout of %q", target)
		}
	}
	parent, err := a.parentDir(name, dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	pid, depth, err := a.mark(name, parent)
	if err != nil {
		return err
	}
	if target == "" {
		fd, err := unix.Openat(parent, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return failed(name, "opening the opaque directory", err)
		}
		defer unix.Close(fd)
		if err := a.clean(fd, pid, depth); err != nil {
			return failed(name, "emptying the opaque directory", err)
		}
		return nil
	}
	if _, ok := a.created[entryID{pid, target}]; ok {
		return nil
	}
	var st unix.Stat_t
	switch err := unix.Fstatat(parent, target, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == unix.ENOENT:
		return nil
	case err != nil:
		return failed(name, "inspecting the whited-out entry", err)
	}
	if _, ok := a.depth[idOf(&st)]; ok && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		err = a.cleanAt(parent, target, depth+1)
	} else {
		err = a.removeAt(parent, target, depth+1)
	}
	if err != nil {
		return failed(name, "removing the whited-out entry", err)
	}
	return nil
}

// cleanAt cleans the directory name in parent.
func (a *applier) cleanAt(parent int, name string, depth int) error {
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	id, err := statID(fd)
	if err != nil {
		return err
	}
	return a.clean(fd, id, depth)
}

// clean removes from the directory fd (identity id, at depth) everything
// that lower layers put there, keeping what this layer created, and in the
// directories this layer wrote into, only what it wrote.
func (a *applier) clean(fd int, id fileID, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("deeper than %d directories below root: %w", maxDepth, ErrLimit)
	}
	// Once clean, a directory holds only what this layer wrote, and cleaning
	// it again would change nothing: without this, a layer of many opaque
	// markers in one large directory would cost their product.
	if _, ok := a.cleaned[id]; ok {
		return nil
	}
	a.cleaned[id] = struct{}{}
	names, err := readDirNames(fd)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, ok := a.created[entryID{id, n}]; ok {
			continue
		}
		var st unix.Stat_t
		switch err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); {
		case err == unix.ENOENT:
			continue
		case err != nil:
			return err
		}
		if _, ok := a.depth[idOf(&st)]; ok && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = a.cleanAt(fd, n, depth+1)
		} else {
			err = a.removeAt(fd, n, depth+1)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// removeAt removes name from the directory parent, a directory with all it
// holds, never following a symlink. depth is that of name below root.
func (a *applier) removeAt(parent int, name string, depth int) error {
	var st unix.Stat_t
	switch err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == unix.ENOENT:
		return nil
	case err != nil:
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlinkat(parent, name, 0)
	}
	if depth > maxDepth {
		return fmt.Errorf("deeper than %d directories below root: %w", maxDepth, ErrLimit)
	}
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	names, err := readDirNames(fd)
	for _, n := range names {
		if err != nil {
			break
		}
		err = a.removeAt(fd, n, depth+1)
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	delete(a.depth, idOf(&st))
	return unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
}

// readDirNames lists the directory open as fd, without "." and "..".
func readDirNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	buf := make([]byte, 64<<10)
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
