package guest

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/tarx"
)

// Where the workspace lives, and where the agent keeps what must stay out
// of it: the writable layer's disk is mounted at LayerDir, and the baseline
// copy of /workspace sits on it beside the overlay's directories.
const (
	WorkspaceDir = "/workspace"
	LayerDir     = "/run/pyro/layer"
	// BaselineTar is the tar stream /workspace was seeded from: one
	// sequential file, cheap to write, indexed when diffing.
	BaselineTar = LayerDir + "/baseline.tar"
)

// Bounds of workspace operations, whatever the host asks.
const (
	maxTarBytes    = 64 << 30
	maxTarFiles    = 1 << 20
	maxListEntries = 100000
	maxReadBytes   = 64 << 20
	maxWriteBytes  = 64 << 20
)

// wsError is an operation's failure, in words for the user.
func wsError(code, format string, args ...any) *agentproto.Error {
	return &agentproto.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// fsError turns a file system error on path into an *agentproto.Error.
func fsError(p string, err error) *agentproto.Error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return wsError(agentproto.CodeNotFound, "%s does not exist", displayPath(p))
	case errors.Is(err, fs.ErrPermission):
		return wsError(agentproto.CodePermission, "%s: permission denied", displayPath(p))
	case strings.Contains(err.Error(), "path escapes from parent"):
		return wsError(agentproto.CodePermission, "%s resolves outside /workspace (through .. or a symlink)", displayPath(p))
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return wsError(agentproto.CodeInternal, "%s: %v", displayPath(p), pe.Err)
	}
	return wsError(agentproto.CodeInternal, "%s: %v", displayPath(p), err)
}

func displayPath(rel string) string {
	if rel == "." || rel == "" {
		return WorkspaceDir
	}
	return WorkspaceDir + "/" + rel
}

// workspaceRel turns a request path into a clean path relative to
// /workspace, refusing anything that leaves it lexically. Symlinks are
// handled by os.Root, which refuses to resolve outside its directory.
func workspaceRel(p string) (string, *agentproto.Error) {
	if strings.ContainsRune(p, 0) {
		return "", wsError(agentproto.CodeInvalid, "path contains a NUL byte")
	}
	if len(p) > 4096 {
		return "", wsError(agentproto.CodeInvalid, "path longer than 4096 bytes")
	}
	if path.IsAbs(p) {
		c := path.Clean(p)
		if c != WorkspaceDir && !strings.HasPrefix(c, WorkspaceDir+"/") {
			return "", wsError(agentproto.CodePermission, "%s is outside /workspace", p)
		}
		p = strings.TrimPrefix(strings.TrimPrefix(c, WorkspaceDir), "/")
	}
	c := path.Clean("./" + p)
	if c == "" {
		c = "."
	}
	if !fs.ValidPath(c) {
		return "", wsError(agentproto.CodePermission, "%s is outside /workspace", p)
	}
	return c, nil
}

// openRel checks a request path and opens /workspace to resolve it in.
func openRel(p string) (*os.Root, string, *agentproto.Error) {
	rel, e := workspaceRel(p)
	if e != nil {
		return nil, "", e
	}
	ws, e := openWorkspace()
	if e != nil {
		return nil, "", e
	}
	return ws, rel, nil
}

func openWorkspace() (*os.Root, *agentproto.Error) {
	r, err := os.OpenRoot(WorkspaceDir)
	if err != nil {
		return nil, wsError(agentproto.CodeInternal, "opening /workspace: %v", err)
	}
	return r, nil
}

// sendResult sends an operation's result: in the event when it fits,
// else as data on ChannelResult followed by an event that says so.
func sendResult(st *agentproto.Stream, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(data) <= agentproto.MaxControlPayload/2 {
		return st.SendEvent(agentproto.ResultEvent[json.RawMessage]{Event: agentproto.EventResult, Result: data})
	}
	if _, err := st.SendData(context.Background(), agentproto.ChannelResult, data); err != nil {
		return err
	}
	return st.SendEvent(agentproto.ResultEvent[*struct{}]{Event: agentproto.EventResult, OnData: true})
}

// withRequest decodes an operation's request and runs fn with it.
func withRequest[T any](op agentproto.Op, body json.RawMessage, fn func(T) *agentproto.Error) *agentproto.Error {
	var req T
	if err := json.Unmarshal(body, &req); err != nil {
		return wsError(agentproto.CodeInvalid, "malformed %s request", op)
	}
	return fn(req)
}

// serveWorkspaceOp runs one workspace operation; it returns the error to
// abort the stream with, or nil once the result was sent.
func (a *agent) serveWorkspaceOp(st *agentproto.Stream, op agentproto.Op, body json.RawMessage) *agentproto.Error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-st.Done()
		cancel()
	}()
	switch op {
	case agentproto.OpTarIn:
		return withRequest(op, body, func(req agentproto.TarInRequest) *agentproto.Error { return tarIn(ctx, st, req) })
	case agentproto.OpTarOut:
		return withRequest(op, body, func(req agentproto.PathRequest) *agentproto.Error { return tarOut(ctx, st, req.Path) })
	case agentproto.OpFileList:
		return withRequest(op, body, func(req agentproto.FileListRequest) *agentproto.Error { return fileList(st, req) })
	case agentproto.OpFileRead:
		return withRequest(op, body, func(req agentproto.FileReadRequest) *agentproto.Error { return fileRead(ctx, st, req) })
	case agentproto.OpFileWrite:
		return withRequest(op, body, func(req agentproto.FileWriteRequest) *agentproto.Error { return fileWrite(ctx, st, req) })
	case agentproto.OpFileRemove:
		return withRequest(op, body, func(req agentproto.PathRequest) *agentproto.Error { return fileRemove(st, req.Path) })
	case agentproto.OpDiff:
		return withRequest(op, body, func(req agentproto.DiffRequest) *agentproto.Error { return diffWorkspace(ctx, st, req) })
	case agentproto.OpPing:
		sendResult(st, struct{}{})
		return nil
	case agentproto.OpSink:
		n, err := io.Copy(io.Discard, st.DataReader(ctx, agentproto.ChannelStdin))
		if err != nil {
			return nil
		}
		sendResult(st, agentproto.CountResult{Bytes: n})
		return nil
	case agentproto.OpSource:
		return withRequest(op, body, func(req agentproto.SourceRequest) *agentproto.Error {
			n, err := io.Copy(st.DataWriter(ctx, agentproto.ChannelStdout), io.LimitReader(zeroReader{}, bound(req.Bytes, 16<<30)))
			if err == nil {
				sendResult(st, agentproto.CountResult{Bytes: n})
			}
			return nil
		})
	}
	return wsError(agentproto.CodeUnsupported, "the agent does not know the operation %q", op)
}

func tarIn(ctx context.Context, st *agentproto.Stream, req agentproto.TarInRequest) *agentproto.Error {
	ws, rel, e := openRel(req.Path)
	if e != nil {
		return e
	}
	defer ws.Close()
	if err := ws.MkdirAll(rel, 0o755); err != nil {
		return fsError(rel, err)
	}
	dest, err := ws.OpenRoot(rel)
	if err != nil {
		return fsError(rel, err)
	}
	defer dest.Close()
	limits := tarx.Limits{MaxBytes: bound(req.MaxBytes, maxTarBytes), MaxFiles: bound(req.MaxFiles, maxTarFiles)}
	var in io.Reader = st.DataReader(ctx, agentproto.ChannelStdin)
	var baseline *os.File
	var baselineBuf *bufio.Writer
	if req.Baseline {
		var err error
		if baseline, err = os.OpenFile(BaselineTar+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return wsError(agentproto.CodeInternal, "recording the baseline: %v", err)
		}
		defer os.Remove(BaselineTar + ".tmp")
		defer baseline.Close()
		baselineBuf = bufio.NewWriterSize(baseline, 256<<10)
		in = io.TeeReader(in, baselineBuf)
	}
	stats, err := tarx.Extract(ctx, dest, in, limits)
	if err == nil && baseline != nil {
		// The baseline keeps the whole stream, end-of-archive included.
		if _, err = io.Copy(io.Discard, in); err == nil {
			if err = baselineBuf.Flush(); err == nil {
				if err = baseline.Close(); err == nil {
					err = os.Rename(BaselineTar+".tmp", BaselineTar)
				}
			}
		}
	}
	res := agentproto.TarInResult{Files: stats.Files, Bytes: stats.Bytes}
	if err != nil {
		var ae *agentproto.Error
		if errors.As(err, &ae) {
			return ae
		}
		return wsError(agentproto.CodeInvalid, "extracting into %s: %v", displayPath(rel), err)
	}
	if err := sendResult(st, res); err != nil {
		return nil
	}
	return nil
}

func bound(v, max int64) int64 {
	if v <= 0 || v > max {
		return max
	}
	return v
}

// tarOut streams rel as a tar archive: a directory's entries relative to
// it ("./a", "./b/c"), a file as one entry named by its base name.
func tarOut(ctx context.Context, st *agentproto.Stream, p string) *agentproto.Error {
	ws, rel, e := openRel(p)
	if e != nil {
		return e
	}
	defer ws.Close()
	// Stat follows a symlink only if it stays in /workspace.
	fi, err := ws.Stat(rel)
	if err != nil {
		return fsError(rel, err)
	}
	// Full frames, not one per tar header.
	bw := bufio.NewWriterSize(st.DataWriter(ctx, agentproto.ChannelStdout), agentproto.MaxPayload)
	tw := tar.NewWriter(bw)
	if fi.Mode().IsRegular() {
		if err := addTarFile(tw, ws, rel, path.Base(rel), fi); err != nil {
			return fsError(rel, err)
		}
	} else if fi.IsDir() {
		sub, err := ws.OpenRoot(rel)
		if err != nil {
			return fsError(rel, err)
		}
		defer sub.Close()
		err = fs.WalkDir(sub.FS(), ".", func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return addTarEntry(tw, sub, name, "./"+name, info)
		})
		if err != nil {
			return fsError(rel, err)
		}
	} else {
		return wsError(agentproto.CodeInvalid, "%s is neither a file nor a directory", displayPath(rel))
	}
	if err := tw.Close(); err != nil {
		return nil
	}
	if err := bw.Flush(); err != nil {
		return nil
	}
	st.CloseSend()
	return nil
}

func addTarEntry(tw *tar.Writer, r *os.Root, name, tarName string, fi fs.FileInfo) error {
	switch {
	case fi.Mode().IsRegular():
		return addTarFile(tw, r, name, tarName, fi)
	case fi.IsDir():
		h, _ := tar.FileInfoHeader(fi, "")
		h.Name = strings.TrimSuffix(tarName, "/") + "/"
		clearOwner(h)
		return tw.WriteHeader(h)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := r.Readlink(name)
		if err != nil {
			return err
		}
		h, _ := tar.FileInfoHeader(fi, target)
		h.Name = tarName
		clearOwner(h)
		return tw.WriteHeader(h)
	}
	return nil // sockets, FIFOs, devices: not workspace content
}

func addTarFile(tw *tar.Writer, r *os.Root, name, tarName string, fi fs.FileInfo) error {
	f, err := r.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	h, _ := tar.FileInfoHeader(fi, "")
	h.Name = tarName
	clearOwner(h)
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err = io.Copy(tw, io.LimitReader(f, fi.Size()))
	return err
}

func clearOwner(h *tar.Header) {
	h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
	h.Format = tar.FormatPAX
	h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
}

func artifactType(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "other"
}

func fileList(st *agentproto.Stream, req agentproto.FileListRequest) *agentproto.Error {
	ws, rel, e := openRel(req.Path)
	if e != nil {
		return e
	}
	defer ws.Close()
	fi, err := ws.Stat(rel)
	if err != nil {
		return fsError(rel, err)
	}
	limit := req.MaxEntries
	if limit <= 0 || limit > maxListEntries {
		limit = maxListEntries
	}
	res := agentproto.FileListResult{Path: displayPath(rel), Entries: []agentproto.FileEntry{}}
	add := func(name string, info fs.FileInfo) bool {
		if len(res.Entries) >= limit {
			res.Truncated = true
			return false
		}
		ent := agentproto.FileEntry{Path: displayPath(name), ArtifactType: artifactType(info.Mode())}
		if info.Mode().IsRegular() {
			ent.SizeBytes = info.Size()
		}
		if ent.ArtifactType == "symlink" {
			ent.LinkTarget, _ = ws.Readlink(name)
		}
		res.Entries = append(res.Entries, ent)
		return true
	}
	if !fi.IsDir() {
		info, err := ws.Lstat(rel)
		if err != nil {
			return fsError(rel, err)
		}
		add(rel, info)
	} else {
		err = fs.WalkDir(ws.FS(), rel, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if name == rel {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if !add(name, info) {
				return fs.SkipAll
			}
			if d.IsDir() && !req.Recursive {
				return fs.SkipDir
			}
			return nil
		})
		if err != nil {
			return fsError(rel, err)
		}
	}
	sendResult(st, res)
	st.CloseSend()
	return nil
}

func fileRead(ctx context.Context, st *agentproto.Stream, req agentproto.FileReadRequest) *agentproto.Error {
	ws, rel, e := openRel(req.Path)
	if e != nil {
		return e
	}
	defer ws.Close()
	f, err := ws.Open(rel)
	if err != nil {
		return fsError(rel, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fsError(rel, err)
	}
	if !fi.Mode().IsRegular() {
		return wsError(agentproto.CodeInvalid, "%s is a %s, not a file", displayPath(rel), artifactType(fi.Mode()))
	}
	limit := bound(req.MaxBytes, maxReadBytes)
	n, err := io.Copy(st.DataWriter(ctx, agentproto.ChannelStdout), io.LimitReader(f, limit))
	if err != nil {
		return nil // the host went away
	}
	sendResult(st, agentproto.FileReadResult{Path: displayPath(rel), SizeBytes: fi.Size(), Truncated: fi.Size() > n})
	st.CloseSend()
	return nil
}

func fileWrite(ctx context.Context, st *agentproto.Stream, req agentproto.FileWriteRequest) *agentproto.Error {
	ws, rel, e := openRel(req.Path)
	if e != nil {
		return e
	}
	defer ws.Close()
	if rel == "." {
		return wsError(agentproto.CodeInvalid, "cannot write /workspace itself")
	}
	mode := fs.FileMode(0o644)
	if fi, err := ws.Stat(rel); err == nil {
		if !fi.Mode().IsRegular() {
			return wsError(agentproto.CodeInvalid, "%s is a %s, not a file", displayPath(rel), artifactType(fi.Mode()))
		}
		mode = fi.Mode().Perm()
	}
	if req.Mode != 0 {
		mode = fs.FileMode(req.Mode).Perm()
	}
	if err := mkParent(ws, rel); err != nil {
		return fsError(rel, err)
	}
	// Write beside the target and rename over it: a reader never sees half
	// a file, and a failed write leaves the old one.
	tmp := path.Join(path.Dir(rel), fmt.Sprintf(".%s.pyro-%d", path.Base(rel), time.Now().UnixNano()))
	f, err := ws.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fsError(rel, err)
	}
	limit := bound(req.MaxBytes, maxWriteBytes)
	n, err := io.Copy(f, io.LimitReader(st.DataReader(ctx, agentproto.ChannelStdin), limit+1))
	if err == nil && n > limit {
		err = fmt.Errorf("more than %d bytes", limit)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ws.Rename(tmp, rel)
	}
	if err != nil {
		ws.Remove(tmp)
		return fsError(rel, err)
	}
	sendResult(st, agentproto.FileWriteResult{Path: displayPath(rel), BytesWritten: n})
	st.CloseSend()
	return nil
}

func fileRemove(st *agentproto.Stream, p string) *agentproto.Error {
	ws, rel, e := openRel(p)
	if e != nil {
		return e
	}
	defer ws.Close()
	if rel == "." {
		return wsError(agentproto.CodeInvalid, "cannot remove /workspace itself")
	}
	if err := ws.Remove(rel); err != nil {
		return fsError(rel, err)
	}
	sendResult(st, agentproto.PathRequest{Path: displayPath(rel)})
	st.CloseSend()
	return nil
}

// sortedNames returns the names in a directory of r, sorted.
func sortedNames(r *os.Root, dir string) ([]string, error) {
	f, err := r.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

func mkParent(r *os.Root, name string) error {
	if dir := path.Dir(name); dir != "." {
		return r.MkdirAll(dir, 0o755)
	}
	return nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
