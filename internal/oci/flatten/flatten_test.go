package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type applyCase struct {
	name   string
	layers [][]ent
	opts   Options
	// err is what the error must match with errors.Is; errText a part of its
	// text. Both empty: Apply must succeed.
	err     error
	errText string
	root    bool // needs to run as root
	check   func(t *testing.T, s *sandbox, st *Stats)
}

var (
	t2001 = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	t2002 = time.Date(2002, 2, 2, 0, 0, 0, 0, time.UTC)
)

func deep(c string, n int) string {
	return strings.Repeat(c+"/", n-1) + c
}

// capability is a vfs_cap_data (revision 2) granting CAP_NET_RAW, effective.
func capability() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1)
	binary.LittleEndian.PutUint32(b[4:], 1<<13)
	return string(b)
}

var applyCases = []applyCase{
	// Names.
	{
		name:   "dot-dot traversal",
		layers: [][]ent{{reg("../../etc/x", "pwned")}},
		err:    ErrRefused, errText: `".." component`,
	},
	{
		name:   "dot-dot inside a name",
		layers: [][]ent{{reg("a/../../outside/canary", "pwned")}},
		err:    ErrRefused, errText: `".." component`,
	},
	{
		name:   "dot-dot hidden in a long name",
		layers: [][]ent{{reg(strings.Repeat("x/", 60)+"../outside/canary", "pwned")}},
		err:    ErrRefused,
	},
	{
		name:   "absolute name is confined",
		layers: [][]ent{{reg("/abs/file", "ok"), reg("$OUT/canary", "pwned")}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantFile(t, s.root, "abs/file", "ok")
			wantFile(t, s.root, strings.TrimPrefix(s.out, "/")+"/canary", "pwned")
		},
	},
	{
		name:   "dot components",
		layers: [][]ent{{dir("./"), reg("./a/./b", "ok"), dir("/")}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantFile(t, s.root, "a/b", "ok")
		},
	},
	{
		name:   "root as a file",
		layers: [][]ent{{reg(".", "x")}},
		err:    ErrRefused, errText: "root can only be a directory",
	},
	{
		name:   "name too long",
		layers: [][]ent{{reg(strings.Repeat(strings.Repeat("n", 99)+"/", 41)+"x", "x")}},
		err:    ErrRefused, errText: "longer than 4096 bytes",
	},
	{
		name:   "component too long",
		layers: [][]ent{{reg(strings.Repeat("n", 256), "x")}},
		err:    ErrRefused, errText: "component longer than 255",
	},
	{
		name:   "name too deep",
		layers: [][]ent{{reg(deep("d", 257), "x")}},
		err:    ErrRefused, errText: "more than 256 components",
	},
	{
		name:   "deepest name allowed",
		layers: [][]ent{{reg(deep("d", 256), "x")}},
		check: func(t *testing.T, s *sandbox, st *Stats) {
			wantFile(t, s.root, deep("d", 256), "x")
			if st.Files != 256 {
				t.Errorf("Files = %d, want 256 (1 entry, 255 parents)", st.Files)
			}
		},
	},
	{
		name: "symlinks cannot build a deeper tree",
		layers: [][]ent{{
			reg(deep("d", 200)+"/f", "x"),
			sym("l", deep("d", 200)),
			reg("l/"+deep("e", 100), "x"),
		}},
		err: ErrLimit, errText: "deeper than 256",
	},
	{
		name:   "whiteout as a directory",
		layers: [][]ent{{reg("a/.wh.b/c", "x")}},
		err:    ErrRefused, errText: "whiteout",
	},

	// Symlinks.
	{
		name:   "file through a symlink to outside",
		layers: [][]ent{{sym("a", "$OUT"), reg("a/canary", "pwned")}},
		err:    ErrRefused, errText: "leads nowhere",
	},
	{
		name: "file through a symlink to outside, across layers",
		layers: [][]ent{
			{sym("a", "$OUT")},
			{reg("a/canary", "pwned")},
		},
		err: ErrRefused,
	},
	{
		name:   "file through a symlink to /etc",
		layers: [][]ent{{sym("a", "/etc"), reg("a/"+filepath.Base(hostCanary), "pwned")}},
		err:    ErrRefused,
	},
	{
		name: "file through a symlink to /etc lands in root's /etc",
		layers: [][]ent{
			{dir("etc/"), sym("a", "/etc")},
			{reg("a/"+filepath.Base(hostCanary), "ok")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantFile(t, s.root, "etc/"+filepath.Base(hostCanary), "ok")
			wantSymlink(t, s.root, "a", "/etc")
		},
	},
	{
		name: "file through an absolute symlink stays in root",
		layers: [][]ent{{
			dir("$OUT/"), sym("a", "$OUT"), reg("a/canary", "ok"),
		}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantFile(t, s.root, strings.TrimPrefix(s.out, "/")+"/canary", "ok")
		},
	},
	{
		name:   "file through a relative symlink out of root",
		layers: [][]ent{{sym("a", "../outside"), reg("a/canary", "pwned")}},
		err:    ErrRefused,
	},
	{
		name: "dot-dot symlink chains stop at root",
		layers: [][]ent{{
			sym("l", ".."),
			reg("l/l/l/f", "one"),
			sym("m", "../../../.."),
			dir("m/outside/"),
			reg("m/l/m/outside/canary", "two"),
			sym("n", "l/m/../../.."),
			reg("n/g", "three"),
		}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantFile(t, s.root, "f", "one")
			wantFile(t, s.root, "outside/canary", "two")
			wantFile(t, s.root, "g", "three")
		},
	},
	{
		name:   "symlink loop",
		layers: [][]ent{{sym("x", "y"), sym("y", "x"), reg("x/f", "x")}},
		err:    ErrRefused, errText: "loop",
	},
	{
		name:   "file under a file",
		layers: [][]ent{{reg("f", "x"), sym("l", "f"), reg("l/x", "x")}},
		err:    ErrRefused, errText: "not a directory",
	},
	{
		name: "file over a symlink to outside replaces the symlink",
		layers: [][]ent{
			{sym("s", "$OUT/canary"), sym("t", "../outside/canary")},
			{reg("s", "mine"), reg("t", "mine too")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantFile(t, s.root, "s", "mine")
			wantFile(t, s.root, "t", "mine too")
		},
	},
	{
		name: "directory over a symlink to outside replaces the symlink",
		layers: [][]ent{
			{sym("s", "$OUT")},
			{dir("s/"), reg("s/new", "x")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantDir(t, s.root, "s")
			wantOnly(t, s.root, "s", "s/new")
		},
	},
	{
		name: "symlink targets are kept as they are",
		layers: [][]ent{{
			sym("abs", "/etc/passwd"), sym("rel", "../../x"), sym("out", "$OUT/canary"),
		}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantSymlink(t, s.root, "abs", "/etc/passwd")
			wantSymlink(t, s.root, "rel", "../../x")
			wantSymlink(t, s.root, "out", s.out+"/canary")
		},
	},
	{
		name:   "empty symlink target",
		layers: [][]ent{{sym("s", "")}},
		err:    ErrRefused, errText: "empty target",
	},
	{
		name:   "symlink target too long",
		layers: [][]ent{{sym("s", strings.Repeat("t", 4096))}},
		err:    ErrRefused, errText: "longer than 4095",
	},

	// Hard links.
	{
		name:   "hard link",
		layers: [][]ent{{reg("f", "x"), hard("h", "f"), hard("d/h", "/f"), hard("h", "./f")}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			a, b, c := lstat(t, s.root+"/f"), lstat(t, s.root+"/h"), lstat(t, s.root+"/d/h")
			if a.Ino != b.Ino || a.Ino != c.Ino || a.Nlink != 3 {
				t.Errorf("inodes %d %d %d nlink %d, want one inode, 3 links", a.Ino, b.Ino, c.Ino, a.Nlink)
			}
		},
	},
	{
		name:   "hard link to a lower layer",
		layers: [][]ent{{reg("f", "x")}, {hard("h", "f")}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			if a, b := lstat(t, s.root+"/f"), lstat(t, s.root+"/h"); a.Ino != b.Ino {
				t.Errorf("h is not a link to f")
			}
		},
	},
	{
		name:   "hard link to outside",
		layers: [][]ent{{hard("h", "../outside/canary")}},
		err:    ErrRefused, errText: `".." component`,
	},
	{
		name:   "hard link to an absolute outside path is confined",
		layers: [][]ent{{hard("h", "$OUT/canary")}},
		err:    ErrRefused, errText: "does not exist",
	},
	{
		name:   "hard link through a symlink to outside",
		layers: [][]ent{{sym("l", "$OUT"), hard("h", "l/canary")}},
		err:    ErrRefused,
	},
	{
		name:   "hard link through a relative symlink to outside",
		layers: [][]ent{{sym("l", "../outside"), hard("h", "l/canary")}},
		err:    ErrRefused,
	},
	{
		name: "hard link to a symlink pointing out links the symlink",
		layers: [][]ent{
			{sym("s", "$OUT/canary"), hard("h", "s")},
			{reg("h", "mine")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantSymlink(t, s.root, "s", s.out+"/canary")
			wantFile(t, s.root, "h", "mine")
		},
	},
	{
		name:   "hard link to a directory",
		layers: [][]ent{{dir("d/"), hard("h", "d")}},
		err:    ErrRefused, errText: "directory",
	},
	{
		name:   "hard link to root",
		layers: [][]ent{{hard("h", "/")}},
		err:    ErrRefused,
	},
	{
		name:   "hard link to nothing",
		layers: [][]ent{{hard("h", "missing")}},
		err:    ErrRefused, errText: "does not exist",
	},

	// Special files.
	{
		name: "device nodes and FIFOs are skipped",
		layers: [][]ent{{
			{typ: tar.TypeChar, name: "dev/null", mode: 0o666, devmajor: 1},
			{typ: tar.TypeBlock, name: "dev/sda", mode: 0o660, devmajor: 8},
			{typ: tar.TypeFifo, name: "p", mode: 0o644},
			{typ: 'V', name: "volume"},
			reg("f", "x"),
		}},
		check: func(t *testing.T, s *sandbox, st *Stats) {
			wantOnly(t, s.root, "f")
			if len(st.Skipped) != 4 {
				t.Errorf("Skipped = %q, want 4 entries", st.Skipped)
			}
		},
	},
	{
		name: "skipped list is bounded",
		layers: [][]ent{func() []ent {
			var es []ent
			for i := range 150 {
				es = append(es, ent{typ: tar.TypeFifo, name: "p" + strings.Repeat("x", i), mode: 0o644})
			}
			return es
		}()},
		check: func(t *testing.T, s *sandbox, st *Stats) {
			if len(st.Skipped) != 100 || st.SkippedOmitted != 50 {
				t.Errorf("Skipped %d, omitted %d; want 100, 50", len(st.Skipped), st.SkippedOmitted)
			}
		},
	},

	// Whiteouts.
	{
		name: "whiteouts across layers",
		layers: [][]ent{
			{dir("a/"), reg("a/x", "x"), reg("a/y", "y"), reg("b", "b"), reg("d/e/f", "f"), sym("s", "$OUT")},
			{wh("a/.wh.x"), wh(".wh.b"), wh(".wh.d"), wh(".wh.s"), wh(".wh.missing"), wh("new/.wh.missing")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantOnly(t, s.root, "a", "a/y", "new")
		},
	},
	{
		name: "whiteout through a symlink to outside",
		layers: [][]ent{
			{sym("s", "$OUT")},
			{wh("s/.wh.canary")},
		},
		err: ErrRefused,
	},
	{
		name: "whiteout through a dot-dot symlink stays in root",
		layers: [][]ent{
			{sym("up", ".."), sym("up2", "../.."), reg("outside", "in root")},
			{wh("up/.wh.outside"), wh("up2/.wh.outside")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantOnly(t, s.root, "up", "up2")
		},
	},
	{
		name: "opaque directory through a dot-dot symlink is root",
		layers: [][]ent{
			{sym("up", ".."), reg("old", "x")},
			{reg("new", "x"), wh("up/.wh..wh..opq")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantOnly(t, s.root, "new")
		},
	},
	{
		name: "opaque directory after its siblings",
		layers: [][]ent{
			{reg("d/a", "a"), reg("d/b", "b"), reg("d/sub/x", "x"), reg("d/sub2/z", "z"), reg("keep", "k")},
			{dir("d/"), reg("d/c", "c"), reg("d/sub/y", "y"), reg("d/b", "new b"), wh("d/.wh..wh..opq"), reg("d/e", "e")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantOnly(t, s.root, "d", "d/b", "d/c", "d/e", "d/sub", "d/sub/y", "keep")
			wantFile(t, s.root, "d/b", "new b")
		},
	},
	{
		name: "opaque directory first",
		layers: [][]ent{
			{reg("d/a", "a"), reg("d/sub/x", "x")},
			{dir("d/"), wh("d/.wh..wh..opq"), reg("d/c", "c"), reg("d/sub/y", "y")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantOnly(t, s.root, "d", "d/c", "d/sub", "d/sub/y")
		},
	},
	{
		name: "opaque directory that did not exist",
		layers: [][]ent{
			{reg("x", "x")},
			{wh("d/.wh..wh..opq")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantOnly(t, s.root, "x", "d")
		},
	},
	{
		name: "opaque marker twice",
		layers: [][]ent{
			{reg("d/a", "a"), reg("d/sub/x", "x")},
			{wh("d/.wh..wh..opq"), reg("d/b", "b"), reg("d/sub/y", "y"), wh("d/.wh..wh..opq"), wh("d/.wh.sub")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantOnly(t, s.root, "d", "d/b", "d/sub", "d/sub/y")
		},
	},
	{
		name: "whiteout hides lower layers only",
		layers: [][]ent{
			{reg("a", "1"), reg("b", "1"), reg("d/old", "x")},
			{reg("a", "2"), wh(".wh.a"), wh(".wh.b"), reg("b", "2"), reg("d/new", "y"), wh(".wh.d")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantOnly(t, s.root, "a", "b", "d", "d/new")
			wantFile(t, s.root, "a", "2")
			wantFile(t, s.root, "b", "2")
		},
	},
	{
		name:   "whiteout of dot-dot",
		layers: [][]ent{{wh("a/.wh..")}},
		err:    ErrRefused,
	},
	{
		name:   "whiteout of nothing",
		layers: [][]ent{{wh(".wh.")}},
		err:    ErrRefused,
	},
	{
		name:   "whiteouts are never materialised",
		layers: [][]ent{{wh(".wh..wh.plnk"), wh("a/.wh..wh.aufs"), sym(".wh.x", "/etc"), hard(".wh.y", "z"), {typ: tar.TypeChar, name: ".wh.c"}}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantOnly(t, s.root)
		},
	},
	{
		name:   "hard link to a whiteout",
		layers: [][]ent{{hard("h", ".wh.x")}},
		err:    ErrRefused,
	},

	// Replacement.
	{
		name: "entries replace entries of another type",
		layers: [][]ent{
			{reg("x/child", "c"), reg("y", "y"), reg("z/child", "c"), sym("w", "$OUT"), reg("v", "v"), dir("u/"), reg("u/keep", "k")},
			{reg("x", "file"), dir("y/"), sym("z", "/tmp"), dir("w/"), reg("w/f", "f"), sym("v", "target"), dir("u/")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantFile(t, s.root, "x", "file")
			wantDir(t, s.root, "y")
			wantSymlink(t, s.root, "z", "/tmp")
			wantFile(t, s.root, "w/f", "f")
			wantSymlink(t, s.root, "v", "target")
			wantFile(t, s.root, "u/keep", "k")
			wantOnly(t, s.root, "x", "y", "z", "w", "w/f", "v", "u", "u/keep")
		},
	},
	{
		name: "file over a hard link does not change the other name",
		layers: [][]ent{
			{reg("f", "orig"), hard("h", "f")},
			{reg("h", "new")},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantFile(t, s.root, "f", "orig")
			wantFile(t, s.root, "h", "new")
		},
	},
	{
		name: "directory over directory merges and takes the new mode",
		layers: [][]ent{
			{dir("d/"), reg("d/a", "a")},
			{{typ: tar.TypeDir, name: "d/", mode: 0o750}},
		},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantFile(t, s.root, "d/a", "a")
			want := uint32(0o750)
			if os.Geteuid() != 0 {
				want = 0o750 | 0o700
			}
			if m := lstat(t, s.root+"/d").Mode & 0o7777; m != want {
				t.Errorf("d mode %o, want %o", m, want)
			}
		},
	},

	// Metadata.
	{
		name: "permission bits are kept",
		layers: [][]ent{{
			{typ: tar.TypeReg, name: "suid", mode: 0o4755, body: "x"},
			{typ: tar.TypeReg, name: "sgid", mode: 0o2711, body: "x"},
			{typ: tar.TypeReg, name: "none", mode: 0, body: "x"},
			{typ: tar.TypeDir, name: "tmp/", mode: 0o1777},
			{typ: tar.TypeReg, name: "huge", mode: 0o7777777, body: "x"},
		}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			for name, want := range map[string]uint32{"suid": 0o4755, "sgid": 0o2711, "none": 0, "tmp": 0o1777, "huge": 0o7777} {
				if m := lstat(t, filepath.Join(s.root, name)).Mode & 0o7777; m != want {
					t.Errorf("%s: mode %o, want %o", name, m, want)
				}
			}
		},
	},
	{
		name: "owners and capabilities as root",
		root: true,
		layers: [][]ent{{
			{typ: tar.TypeReg, name: "ping", mode: 0o4755, uid: 1234, gid: 5678, body: "x", pax: map[string]string{
				"SCHILY.xattr.security.capability": capability(),
				"SCHILY.xattr.user.ignored":        "x",
			}},
			{typ: tar.TypeDir, name: "home/", mode: 0o2750, uid: 1000, gid: 1000},
			{typ: tar.TypeSymlink, name: "l", link: "ping", uid: 42, gid: 43},
		}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			st := lstat(t, s.root+"/ping")
			if st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o4755 {
				t.Errorf("ping: %d:%d %o, want 1234:5678 4755", st.Uid, st.Gid, st.Mode&0o7777)
			}
			buf := make([]byte, 64)
			n, err := unix.Lgetxattr(s.root+"/ping", "security.capability", buf)
			if err != nil || string(buf[:n]) != capability() {
				t.Errorf("security.capability: %x, %v", buf[:max(n, 0)], err)
			}
			if _, err := unix.Lgetxattr(s.root+"/ping", "user.ignored", buf); err != unix.ENODATA {
				t.Errorf("user.ignored: %v, want ENODATA", err)
			}
			if st := lstat(t, s.root+"/home"); st.Uid != 1000 || st.Gid != 1000 || st.Mode&0o7777 != 0o2750 {
				t.Errorf("home: %d:%d %o", st.Uid, st.Gid, st.Mode&0o7777)
			}
			if st := lstat(t, s.root+"/l"); st.Uid != 42 || st.Gid != 43 {
				t.Errorf("l: %d:%d", st.Uid, st.Gid)
			}
		},
	},
	{
		name:   "owner out of range",
		layers: [][]ent{{{typ: tar.TypeReg, name: "f", uid: 1 << 32}}},
		err:    ErrRefused, errText: "owner",
	},
	{
		name: "times are kept, directories' after their content",
		layers: [][]ent{{
			{typ: tar.TypeDir, name: "d/", mode: 0o755, mtime: t2002},
			{typ: tar.TypeReg, name: "d/f", mode: 0o644, mtime: t2001, body: "x"},
			{typ: tar.TypeSymlink, name: "d/l", link: "f", mtime: t2001},
			{typ: tar.TypeDir, name: "d/sub/", mode: 0o755, mtime: t2001},
			{typ: tar.TypeReg, name: "d/sub/g", mode: 0o644, mtime: t2002},
		}},
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			for name, want := range map[string]time.Time{"d": t2002, "d/f": t2001, "d/l": t2001, "d/sub": t2001, "d/sub/g": t2002} {
				if got := lstat(t, filepath.Join(s.root, name)).Mtim.Sec; got != want.Unix() {
					t.Errorf("%s: mtime %v, want %v", name, time.Unix(got, 0).UTC(), want)
				}
			}
		},
	},

	// Bounds.
	{
		name:   "body shorter than its header",
		layers: [][]ent{{reg("a", "a"), {typ: tar.TypeReg, name: "f", size: 1 << 20, body: "short", short: true}}},
		err:    io.ErrUnexpectedEOF, errText: `entry "f"`,
		check: func(t *testing.T, s *sandbox, st *Stats) {
			if st.Bytes != 1+5 {
				t.Errorf("Bytes = %d, want 6", st.Bytes)
			}
		},
	},
	{
		name:   "huge size in a header",
		layers: [][]ent{{{typ: tar.TypeReg, name: "f", size: 1 << 40, body: "short", short: true}}},
		err:    ErrLimit,
		check: func(t *testing.T, s *sandbox, _ *Stats) {
			wantOnly(t, s.root)
		},
	},
	{
		name:   "too many files",
		opts:   Options{MaxFiles: 3},
		layers: [][]ent{{reg("a", ""), reg("b", ""), reg("c", ""), reg("d", "")}},
		err:    ErrLimit, errText: `entry "d": more than 3 files`,
	},
	{
		name:   "too many files with parents",
		opts:   Options{MaxFiles: 3},
		layers: [][]ent{{reg("a/b/c/d", "")}},
		err:    ErrLimit,
	},
	{
		name:   "too many files across layers",
		opts:   Options{MaxFiles: 3},
		layers: [][]ent{{reg("a", ""), reg("b", "")}, {reg("c", ""), reg("d", "")}},
		err:    ErrLimit,
	},
	{
		name:   "too many bytes",
		opts:   Options{MaxBytes: 1000},
		layers: [][]ent{{reg("a", strings.Repeat("a", 600)), reg("b", strings.Repeat("b", 600))}},
		err:    ErrLimit, errText: `entry "b": 600 bytes exceed the 400 left of 1000`,
	},
	{
		name:   "too many bytes across layers",
		opts:   Options{MaxBytes: 1000},
		layers: [][]ent{{reg("a", strings.Repeat("a", 600))}, {reg("b", strings.Repeat("b", 600))}},
		err:    ErrLimit,
	},
	{
		name:   "bytes up to the limit",
		opts:   Options{MaxBytes: 1000},
		layers: [][]ent{{reg("a", strings.Repeat("a", 600))}, {reg("b", strings.Repeat("b", 400))}},
		check: func(t *testing.T, s *sandbox, st *Stats) {
			if st.Bytes != 1000 || st.Files != 2 {
				t.Errorf("stats %+v", st)
			}
		},
	},
}

func TestApply(t *testing.T) {
	if _, err := os.Lstat(hostCanary); err == nil {
		t.Fatalf("%s exists before the test", hostCanary)
	}
	for _, c := range applyCases {
		t.Run(c.name, func(t *testing.T) {
			if c.root && os.Geteuid() != 0 {
				t.Skip("needs root")
			}
			resolvers(t, func(t *testing.T, noOpenat2 bool) {
				s := newSandbox(t)
				opts := c.opts
				opts.noOpenat2 = noOpenat2
				var stats Stats
				fds := openFDs(t)
				var err error
				for _, l := range c.layers {
					if err = Apply(context.Background(), s.root, bytes.NewReader(tarOf(t, s.out, l...)), &opts, &stats); err != nil {
						break
					}
				}
				if got := openFDs(t); !slices.Equal(got, fds) {
					t.Errorf("descriptors leaked: before %q, after %q", fds, got)
				}
				s.checkOutside(t)
				switch {
				case c.err == nil && c.errText == "":
					if err != nil {
						t.Fatalf("Apply: %v", err)
					}
				case err == nil:
					t.Fatalf("Apply succeeded, want an error matching %v %q", c.err, c.errText)
				case c.err != nil && !errors.Is(err, c.err):
					t.Fatalf("Apply: %v, want an error matching %v", err, c.err)
				case !strings.Contains(err.Error(), c.errText):
					t.Fatalf("Apply: %v, want an error containing %q", err, c.errText)
				}
				if err != nil {
					t.Logf("error: %v", err)
				}
				if c.check != nil {
					c.check(t, s, &stats)
				}
			})
		})
	}
}

func TestApplyNULInName(t *testing.T) {
	s := newSandbox(t)
	b := tarOf(t, s.out, reg(strings.Repeat("a", 120)+"\x01b", "x"))
	b = bytes.ReplaceAll(b, []byte{1}, []byte{0})
	err := Apply(context.Background(), s.root, bytes.NewReader(b), nil, nil)
	if !errors.Is(err, tar.ErrHeader) || !strings.HasPrefix(err.Error(), "reading layer: ") {
		t.Fatalf("Apply: %v, want reading layer: %v", err, tar.ErrHeader)
	}
	s.checkOutside(t)
	wantOnly(t, s.root)
}

func TestApplyGarbage(t *testing.T) {
	s := newSandbox(t)
	err := Apply(context.Background(), s.root, strings.NewReader(strings.Repeat("garbage!", 200)), nil, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "reading layer: ") {
		t.Fatalf("Apply: %v, want a reading layer error", err)
	}
	if err := Apply(context.Background(), s.root, strings.NewReader(""), nil, nil); err != nil {
		t.Fatalf("Apply of an empty stream: %v", err)
	}
}

func TestApplyCancelled(t *testing.T) {
	s := newSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Apply(ctx, s.root, bytes.NewReader(tarOf(t, s.out, reg("a", "x"))), nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply: %v, want %v", err, context.Canceled)
	}
	wantOnly(t, s.root)

	// Cancelled while copying a file.
	ctx, cancel = context.WithCancel(context.Background())
	r := io.MultiReader(bytes.NewReader(tarOf(t, s.out, ent{typ: tar.TypeReg, name: "big", size: 8 << 20, body: "x", short: true})),
		&cancelReader{cancel: cancel})
	err = Apply(ctx, s.root, r, nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply: %v, want %v", err, context.Canceled)
	}
}

// cancelReader cancels, then reads zeros.
type cancelReader struct{ cancel func() }

func (c *cancelReader) Read(p []byte) (int, error) {
	c.cancel()
	clear(p)
	return len(p), nil
}

func TestApplyRootMissing(t *testing.T) {
	err := Apply(context.Background(), filepath.Join(t.TempDir(), "missing"), strings.NewReader(""), nil, nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "opening root: ") {
		t.Fatalf("Apply: %v", err)
	}
}

func TestCleanName(t *testing.T) {
	for _, c := range []struct{ in, want, rule string }{
		{"a", "a", ""},
		{"./a/b/", "a/b", ""},
		{"/a//b/./c", "a/b/c", ""},
		{"", ".", ""},
		{"/", ".", ""},
		{"./", ".", ""},
		{"..", "", `".." component`},
		{"a/..", "", `".." component`},
		{"../a", "", `".." component`},
		{"a/../b", "", `".." component`},
		{"a\x00b", "", "NUL"},
		{"...", "...", ""},
		{"..a", "..a", ""},
		{".wh.a", ".wh.a", ""},
		{"x/.wh.a", "x/.wh.a", ""},
		{".wh.a/b", "", "whiteout"},
		{"x/.wh.a/b", "", "whiteout"},
		{"x/a.wh.a/b", "x/a.wh.a/b", ""},
		{strings.Repeat("a", 4097), "", "longer than 4096"},
		{strings.Repeat("a", 256), "", "longer than 255"},
		{deep("a", 256), deep("a", 256), ""},
		{deep("a", 257), "", "more than 256"},
		{"/" + deep("a", 256) + "/", deep("a", 256), ""},
	} {
		got, rule := cleanName(c.in)
		if got != c.want || (c.rule == "") != (rule == "") || !strings.Contains(rule, c.rule) {
			t.Errorf("cleanName(%q) = %q, %q; want %q, %q", c.in, got, rule, c.want, c.rule)
		}
	}
}

func TestEntryError(t *testing.T) {
	err := refused("../x\n", "name has a %q component", "..")
	if got, want := err.Error(), `entry "../x\n": name has a ".." component`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	err = failed(strings.Repeat("x", 300), "creating file", unix.ENOSPC)
	if got := err.Error(); !strings.HasSuffix(got, `...(300 bytes): creating file: no space left on device`) || !errors.Is(err, unix.ENOSPC) {
		t.Errorf("Error() = %q", got)
	}
}

func TestApplyMountPoint(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	resolvers(t, func(t *testing.T, noOpenat2 bool) {
		s := newSandbox(t)
		mnt := filepath.Join(s.root, "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
			t.Skipf("cannot mount a tmpfs: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
		layer := tarOf(t, s.out, reg("mnt/x", "x"))
		err := Apply(context.Background(), s.root, bytes.NewReader(layer), &Options{noOpenat2: noOpenat2}, nil)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "mount point") {
			t.Fatalf("Apply: %v, want a refusal to cross the mount point", err)
		}
		wantAbsent(t, mnt, "x")
	})
}

// gnuSparse returns a layer holding the old GNU sparse file "s": "abc"
// followed by a hole, size bytes in all.
func gnuSparse(t *testing.T, size int64) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "s", Size: 3, Mode: 0o644, Format: tar.FormatGNU}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("abc"))
	tw.Close()
	b := buf.Bytes()
	octal := func(off, n int, v int64) {
		copy(b[off:off+n], fmt.Sprintf("%0*o\x00", n-1, v))
	}
	b[156] = tar.TypeGNUSparse
	octal(386, 12, 0)    // sparse[0].offset
	octal(398, 12, 3)    // sparse[0].numbytes
	octal(483, 12, size) // realsize
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b[:512] {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func TestApplyGNUSparse(t *testing.T) {
	s := newSandbox(t)
	var stats Stats
	if err := Apply(context.Background(), s.root, bytes.NewReader(gnuSparse(t, 4096)), nil, &stats); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantFile(t, s.root, "s", "abc"+strings.Repeat("\x00", 4093))
	if stats.Bytes != 4096 {
		t.Errorf("Bytes = %d, want 4096: holes count", stats.Bytes)
	}

	s = newSandbox(t)
	err := Apply(context.Background(), s.root, bytes.NewReader(gnuSparse(t, 1<<40)), &Options{MaxBytes: 1 << 20}, nil)
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("Apply of a 1 TiB sparse file: %v, want %v", err, ErrLimit)
	}
	wantOnly(t, s.root)
}
