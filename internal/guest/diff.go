package guest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/textdiff"
)

const (
	maxDiffEntries    = 1 << 20
	maxDiffChanges    = 10000
	maxDiffPatchBytes = 8 << 20
	// Files larger than this are compared but not diffed as text.
	maxTextDiffFile = 4 << 20
)

type treeEntry struct {
	mode  fs.FileMode
	size  int64
	mtime time.Time
	link  string
}

// scanTree lists every entry under r, without following symlinks.
func scanTree(ctx context.Context, r *os.Root) (map[string]treeEntry, error) {
	out := map[string]treeEntry{}
	err := fs.WalkDir(r.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if name == "." {
			return nil
		}
		if len(out) >= maxDiffEntries {
			return fmt.Errorf("more than %d entries", maxDiffEntries)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := treeEntry{mode: info.Mode(), size: info.Size(), mtime: info.ModTime()}
		if info.Mode()&fs.ModeSymlink != 0 {
			e.link, _ = r.Readlink(name)
		}
		out[name] = e
		return nil
	})
	return out, err
}

func isBinary(b []byte) bool {
	head := b
	if len(head) > 8000 {
		head = head[:8000]
	}
	return bytes.IndexByte(head, 0) >= 0 || !utf8.Valid(b)
}

func readAll(r *os.Root, name string, limit int64) ([]byte, error) {
	f, err := r.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// diffWorkspace compares /workspace with the baseline recorded at create
// (or reset). Unchanged files are recognised by size and modification time
// first, like git's index, then by content.
func diffWorkspace(ctx context.Context, st *agentproto.Stream, req agentproto.DiffRequest) *agentproto.Error {
	ws, e := openWorkspace()
	if e != nil {
		return e
	}
	defer ws.Close()
	base, err := os.OpenRoot(BaselineDir)
	if err != nil {
		return wsError(agentproto.CodeNotFound, "this workspace has no baseline to compare with")
	}
	defer base.Close()
	old, err := scanTree(ctx, base)
	if err != nil {
		return wsError(agentproto.CodeInternal, "reading the baseline: %v", err)
	}
	cur, err := scanTree(ctx, ws)
	if err != nil {
		return wsError(agentproto.CodeInternal, "reading /workspace: %v", err)
	}
	names := make([]string, 0, len(old)+len(cur))
	for n := range old {
		names = append(names, n)
	}
	for n := range cur {
		if _, ok := old[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)

	limit := bound(req.MaxPatchBytes, maxDiffPatchBytes)
	var patch bytes.Buffer
	res := agentproto.DiffResult{Changes: []agentproto.DiffChange{}}
	appendPatch := func(b []byte) {
		if int64(patch.Len()+len(b)) > limit {
			res.PatchTrunc = true
			return
		}
		patch.Write(b)
	}
	record := func(name, change string, binary bool) {
		res.Changed = true
		switch change {
		case "added":
			res.Summary.Added++
		case "modified":
			res.Summary.Modified++
		case "deleted":
			res.Summary.Deleted++
		case "type_changed":
			res.Summary.TypeChanged++
		}
		if binary {
			res.Summary.Binary++
		}
		if len(res.Changes) < maxDiffChanges {
			res.Changes = append(res.Changes, agentproto.DiffChange{Path: WorkspaceDir + "/" + name, Change: change, Binary: binary})
		} else {
			res.ChangesTrunc = true
		}
	}
	content := func(r *os.Root, name string, e treeEntry) ([]byte, bool) {
		if e.mode&fs.ModeSymlink != 0 {
			return []byte(e.link + "\n"), false
		}
		if e.size > maxTextDiffFile {
			return nil, true
		}
		b, err := readAll(r, name, maxTextDiffFile)
		if err != nil {
			return nil, true
		}
		return b, isBinary(b)
	}
	textPatch := func(name string, a []byte, aOK bool, b []byte, bOK bool) {
		oldName, newName := "a/"+name, "b/"+name
		if !aOK {
			oldName, a = "/dev/null", nil
		}
		if !bOK {
			newName, b = "/dev/null", nil
		}
		appendPatch(textdiff.Unified(oldName, newName, a, b))
	}
	binaryPatch := func(name, oldName, newName string) {
		appendPatch([]byte(fmt.Sprintf("Binary files %s and %s differ\n", oldName, newName)))
	}
	for _, name := range names {
		if ctx.Err() != nil {
			return wsError(agentproto.CodeCancelled, "diff cancelled")
		}
		o, inOld := old[name]
		c, inCur := cur[name]
		switch {
		case inOld && !inCur:
			if o.mode.IsDir() {
				continue
			}
			a, bin := content(base, name, o)
			record(name, "deleted", bin)
			if bin {
				binaryPatch(name, "a/"+name, "/dev/null")
			} else {
				textPatch(name, a, true, nil, false)
			}
		case !inOld && inCur:
			if c.mode.IsDir() {
				continue
			}
			b, bin := content(ws, name, c)
			record(name, "added", bin)
			if bin {
				binaryPatch(name, "/dev/null", "b/"+name)
			} else {
				textPatch(name, nil, false, b, true)
			}
		default:
			if o.mode.Type() != c.mode.Type() {
				record(name, "type_changed", false)
				appendPatch([]byte(fmt.Sprintf("Type of %s changed from %s to %s\n", name, artifactType(o.mode), artifactType(c.mode))))
				continue
			}
			if o.mode.IsDir() {
				continue
			}
			if o.mode&fs.ModeSymlink != 0 {
				if o.link != c.link {
					record(name, "modified", false)
					textPatch(name, []byte(o.link+"\n"), true, []byte(c.link+"\n"), true)
				}
				continue
			}
			if o.size == c.size && o.mtime.Equal(c.mtime) && o.mode == c.mode {
				continue
			}
			a, abin := content(base, name, o)
			b, bbin := content(ws, name, c)
			if !abin && !bbin && bytes.Equal(a, b) && o.mode == c.mode {
				continue
			}
			if (abin || bbin) && o.size == c.size && sameFile(base, ws, name) && o.mode == c.mode {
				continue
			}
			record(name, "modified", abin || bbin)
			switch {
			case abin || bbin:
				binaryPatch(name, "a/"+name, "b/"+name)
			case bytes.Equal(a, b):
				appendPatch([]byte(fmt.Sprintf("Mode of %s changed from %v to %v\n", name, o.mode.Perm(), c.mode.Perm())))
			default:
				textPatch(name, a, true, b, true)
			}
		}
	}
	if _, err := st.SendData(ctx, agentproto.ChannelStdout, patch.Bytes()); err != nil {
		return nil
	}
	sendResult(st, res)
	st.CloseSend()
	return nil
}

// sameFile compares two files' bytes without holding them in memory.
func sameFile(a, b *os.Root, name string) bool {
	fa, err := a.Open(name)
	if err != nil {
		return false
	}
	defer fa.Close()
	fb, err := b.Open(name)
	if err != nil {
		return false
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return ea == eb || (ea == io.ErrUnexpectedEOF && eb == io.ErrUnexpectedEOF) || (ea == io.EOF && eb == io.EOF)
		}
	}
}

// saveBaseline copies /workspace to the baseline directory on the layer
// disk, replacing what was there: the reference for later diffs.
func saveBaseline(st *agentproto.Stream) *agentproto.Error {
	tmp := BaselineDir + ".new"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return wsError(agentproto.CodeInternal, "creating the baseline: %v", err)
	}
	if err := copyTree(WorkspaceDir, tmp); err != nil {
		os.RemoveAll(tmp)
		return wsError(agentproto.CodeInternal, "copying /workspace to the baseline: %v", err)
	}
	os.RemoveAll(BaselineDir)
	if err := os.Rename(tmp, BaselineDir); err != nil {
		return wsError(agentproto.CodeInternal, "installing the baseline: %v", err)
	}
	sendResult(st, struct{}{})
	st.CloseSend()
	return nil
}

// copyTree copies src to dst keeping modes, times and symlinks (never
// followed).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if rel != "." {
				if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
					return err
				}
			}
		case info.Mode().IsRegular():
			if err := copyFile(p, target, info.Mode().Perm()); err != nil {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			return nil
		}
		return os.Chtimes(target, info.ModTime(), info.ModTime())
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
