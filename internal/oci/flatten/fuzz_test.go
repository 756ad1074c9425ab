package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Names and link targets the fuzzer builds layers from: ordinary ones, and
// ones that aim outside root in every way we know. Every absolute target
// names the sandbox's canary directory or hostCanary, never another host
// path, so that a broken build cannot damage the host it is tested on.
var (
	fuzzNames = []string{
		"a", "b", "c", "a/b", "a/b/c", "b/a", "d/", "d/e", "d/e/f", "x/y/z",
		"l", "l/x", "l/l/x", "m", "m/a", "up", "up/outside/canary", "up/up/a",
		"../x", "/a", "./a/", "a/../b", ".", "", "/",
		"outside", "outside/canary", "$OUT", "$OUT/canary", "$OUT/dir/f", "$OUT/link", "etc/pyro-flatten-test-canary",
	}
	fuzzLinks = []string{
		"a", "b", "a/b", "..", "../..", "/", ".", "", "x",
		"$OUT", "$OUT/canary", "$OUT/dir", "$OUT/link", "../outside", "../outside/canary", "../../outside/dir",
		"l", "l/x", "l/l", "m/a", "up/..", "/etc", hostCanary, "a/b/c", "d/e",
		"/proc/self/root$OUT/canary", "/proc/self/root$OUT",
	}
	fuzzModes = []int64{0o644, 0o4755, 0, 0o755, 0o1777, 0o700, 0o2750, 0o555}
)

// program turns fuzz input into layers: 4 bytes an entry (operation, name,
// link target, mode and body length).
func program(out string, data []byte) [][]byte {
	var layers [][]byte
	var ents []ent
	flush := func() {
		b, _ := buildTar(out, true, ents...)
		layers = append(layers, b)
		ents = nil
	}
	for ; len(data) >= 4 && len(layers) < 4; data = data[4:] {
		op, n, l, x := data[0], data[1], data[2], data[3]
		name := fuzzNames[int(n)%len(fuzzNames)]
		e := ent{
			name:  name,
			link:  fuzzLinks[int(l)%len(fuzzLinks)],
			mode:  fuzzModes[int(x)%len(fuzzModes)],
			body:  strings.Repeat(string(rune('A'+x%26)), int(x>>3)),
			mtime: time.Unix(int64(x)<<20, 0),
			uid:   int(op >> 4),
			gid:   int(n >> 5),
		}
		dir, base := filepath.Split(strings.TrimSuffix(name, "/"))
		switch op % 10 {
		case 0, 1:
			e.typ = tar.TypeReg
		case 2:
			e.typ = tar.TypeDir
		case 3:
			e.typ = tar.TypeSymlink
		case 4:
			e.typ = tar.TypeLink
		case 5:
			e.typ, e.name = tar.TypeReg, dir+whiteoutPrefix+base
		case 6:
			e.typ, e.name = tar.TypeReg, dir+opaqueMarker
		case 7:
			e.typ = []byte{tar.TypeChar, tar.TypeBlock, tar.TypeFifo, 'V'}[x%4]
		case 8:
			e.typ = tar.TypeReg
			e.pax = map[string]string{"SCHILY.xattr.security.capability": e.body, "SCHILY.xattr.user.x": "y"}
		case 9:
			flush()
			continue
		}
		ents = append(ents, e)
	}
	flush()
	return layers
}

func FuzzApply(f *testing.F) {
	for _, c := range applyCases {
		for _, l := range c.layers {
			b, err := buildTar("/tmp/x/outside", true, l...)
			if err == nil {
				f.Add(append([]byte{0}, b...))
			}
		}
	}
	// Programs: a byte that says so, then 4 bytes an entry (see program).
	f.Add([]byte{1, 3, 10, 9, 0, 9, 0, 0, 0, 0, 11, 0, 0})                                     // l -> $OUT; next layer: l/x
	f.Add([]byte{1, 3, 15, 3, 0, 9, 0, 0, 0, 5, 16, 0, 0, 6, 17, 0, 0})                        // up -> ..; whiteouts through it
	f.Add([]byte{1, 0, 7, 0, 40, 0, 3, 0, 16, 9, 0, 0, 0, 2, 6, 0, 0, 6, 7, 0, 0, 0, 8, 0, 8}) // opaque across layers
	f.Add([]byte{1, 3, 0, 10, 0, 4, 1, 0, 0, 9, 0, 0, 0, 0, 1, 0, 33, 0, 0, 0, 9})             // a -> $OUT/canary, b => a; next: b, a

	kernel := openat2Works()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		s := newSandbox(t)
		var layers [][]byte
		if data[0]&1 == 0 {
			layers = [][]byte{data[1:]}
		} else {
			layers = program(s.out, data[1:])
		}
		opts := Options{MaxFiles: 300, MaxBytes: 1 << 20, noOpenat2: !kernel}
		stats, err := applyAll(s.root, layers, opts)
		s.checkOutside(t)
		if !kernel {
			return
		}
		// The user-space walk must flatten exactly as openat2 does.
		root2 := filepath.Join(s.tmp, "root2")
		if err := unix.Mkdir(root2, 0o755); err != nil {
			t.Fatal(err)
		}
		opts.noOpenat2 = true
		stats2, err2 := applyAll(root2, layers, opts)
		s.checkOutside(t)
		if fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("openat2: %v\nwalk:    %v", err, err2)
		}
		if fmt.Sprint(stats) != fmt.Sprint(stats2) {
			t.Fatalf("openat2: %+v\nwalk:    %+v", stats, stats2)
		}
		a, b := describe(t, s.root, false), describe(t, root2, false)
		if !maps(a, b) {
			t.Fatalf("trees differ:\nopenat2: %v\nwalk:    %v", a, b)
		}
	})
}

// applyAll applies the layers in order, going on after a layer fails so
// that later layers meet the tree a failure leaves behind.
func applyAll(root string, layers [][]byte, opts Options) (*Stats, error) {
	var stats Stats
	var errs []error
	for _, l := range layers {
		if err := Apply(context.Background(), root, bytes.NewReader(l), &opts, &stats); err != nil {
			errs = append(errs, err)
		}
	}
	return &stats, errors.Join(errs...)
}
