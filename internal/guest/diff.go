package guest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
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
	mode   fs.FileMode
	size   int64
	mtime  time.Time
	link   string
	offset int64 // of the data, in the baseline archive
}

// baseline is the indexed baseline archive.
type baseline struct {
	f       *os.File
	entries map[string]treeEntry
}

func (b *baseline) Close() error { return b.f.Close() }

func (b *baseline) read(e treeEntry) ([]byte, error) {
	buf := make([]byte, e.size)
	_, err := b.f.ReadAt(buf, e.offset)
	return buf, err
}

// offsetReader tells where in the file the tar reader is, so each entry's
// data can be found again; Seek lets the tar reader skip data unread.
type offsetReader struct {
	f   *os.File
	off int64
}

func (r *offsetReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.off += int64(n)
	return n, err
}

func (r *offsetReader) Seek(offset int64, whence int) (int64, error) {
	n, err := r.f.Seek(offset, whence)
	if err == nil {
		r.off = n
	}
	return n, err
}

// openBaseline indexes the baseline archive: every entry's metadata and
// where its data is.
func openBaseline(p string) (*baseline, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	b := &baseline{f: f, entries: map[string]treeEntry{}}
	or := &offsetReader{f: f}
	tr := tar.NewReader(or)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || !fs.ValidPath(name) {
			continue
		}
		if len(b.entries) >= maxDiffEntries {
			f.Close()
			return nil, fmt.Errorf("more than %d entries", maxDiffEntries)
		}
		e := treeEntry{mode: h.FileInfo().Mode(), size: h.Size, mtime: h.ModTime, link: h.Linkname, offset: or.off}
		switch h.Typeflag {
		case tar.TypeLink:
			// A hard link has the content of its target.
			if t, ok := b.entries[path.Clean(strings.TrimPrefix(h.Linkname, "./"))]; ok {
				e = t
			}
		case tar.TypeSymlink, tar.TypeDir:
			e.size = 0
		}
		b.entries[name] = e
	}
	return b, nil
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
	base, err := openBaseline(BaselineTar)
	if err != nil {
		return wsError(agentproto.CodeNotFound, "this workspace has no baseline to compare with (%v)", err)
	}
	defer base.Close()
	old := base.entries
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
	// content reads an entry of the baseline (r nil) or of /workspace.
	content := func(r *os.Root, name string, e treeEntry) ([]byte, bool) {
		if e.mode&fs.ModeSymlink != 0 {
			return []byte(e.link + "\n"), false
		}
		if e.size > maxTextDiffFile {
			return nil, true
		}
		var b []byte
		var err error
		if r == nil {
			b, err = base.read(e)
		} else {
			b, err = readAll(r, name, maxTextDiffFile)
		}
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
			a, bin := content(nil, name, o)
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
			a, abin := content(nil, name, o)
			b, bbin := content(ws, name, c)
			if !abin && !bbin && bytes.Equal(a, b) && o.mode == c.mode {
				continue
			}
			if (abin || bbin) && o.size == c.size && o.size <= maxTextDiffFile && bytes.Equal(a, b) && o.mode == c.mode {
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
