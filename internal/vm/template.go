package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/fsutil"
	"github.com/pyro-sandbox/pyro/internal/guest"
	"github.com/pyro-sandbox/pyro/internal/vmm"
)

// A template is a machine booted once to agent-ready and snapshotted there,
// its agent waiting for the answer to its hello: its RAM in a file and its
// device state beside it. A machine restored from it maps that RAM
// copy-on-write and skips the kernel's boot, init's and the first
// command's cold caches; the host then answers the hello, with its own
// clock and fresh entropy, as if the restored machine had just said it.
//
// Templates live in the cache's boot directory, one per key (the VMM's
// build and every argument of the machine: kernel, initramfs, root
// filesystem, size, accelerator), and are rebuilt rather than trusted when
// anything they depend on changes.
const (
	templateMemory = "memory"     // the guest's RAM
	templateState  = "state"      // the VMM's saved device state
	templateHello  = "hello.json" // the agent's hello, which the template's host never answered
	// templateFailed marks a key whose template could not be made (a VMM
	// without the abilities it needs, a full disk): for failedTemplateTTL
	// boots go cold at once instead of paying for another attempt.
	templateFailed    = ".failed"
	failedTemplateTTL = time.Hour
)

// staleTemplate is how long a template may go unused before the next new
// template removes it.
const staleTemplate = 7 * 24 * time.Hour

// errNoTemplate sends a boot down the cold path.
var errNoTemplate = errors.New("no template")

// restoreTimeout bounds a restore to a ready agent: a snapshot that does
// not come back this fast is broken, and a cold boot is the better bet.
const restoreTimeout = 20 * time.Second

type template struct {
	dir   string
	hello agentproto.Hello
}

// TemplatesDir is where the environment cache in cacheDir keeps templates
// (under boot/, which env prune removes whole).
func TemplatesDir(cacheDir string) string { return filepath.Join(cacheDir, "boot", "templates") }

// templateSpec is spec as a template's machine boots it: its init knows
// it will be snapshotted.
func templateSpec(spec vmm.Spec) vmm.Spec {
	spec.Cmdline = append(append([]string(nil), spec.Cmdline...), guest.ParamTemplate+"=1")
	return spec
}

// bootFromTemplate restores the machine of spec from its template, making
// the template first if there is none. errNoTemplate (or any error, when
// ctx is still live) means: boot cold.
func bootFromTemplate(ctx context.Context, o Options, tb vmm.Templater, spec vmm.Spec, v *VM) error {
	spec = templateSpec(spec)
	key, err := tb.TemplateKey(spec)
	if err != nil {
		return errNoTemplate
	}
	dir := filepath.Join(TemplatesDir(o.Cache.Dir), key)
	t, err := openTemplate(dir, spec.MemMiB)
	if err != nil || o.RemakeTemplate {
		// A remake replaces the template only once the new one is made:
		// until then the old one serves.
		if fi, err := os.Stat(dir + templateFailed); err == nil && time.Since(fi.ModTime()) < failedTemplateTTL && !o.RemakeTemplate {
			return errNoTemplate
		}
		if t, err = makeTemplate(ctx, o, spec, dir); err != nil {
			return err
		}
	}
	if err := restore(ctx, o, spec, t, v); err != nil {
		// A restore that only ran out of time (a busy host) proves
		// nothing against the template.
		if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			// A template that does not restore is not used again, nor
			// made again for a while: a VMM that saves but cannot
			// restore would otherwise cost each run a template boot.
			discardTemplate(dir)
			os.WriteFile(dir+templateFailed, []byte(err.Error()+"\n"), 0o644)
			if o.Phase != nil {
				o.Phase("template", "detail", "the template did not restore; booting cold: "+err.Error())
			}
		}
		return err
	}
	return nil
}

// discardTemplate removes a template at once for every pyro: renamed
// away first (an atomic step), so nobody opens a half-removed one.
func discardTemplate(dir string) {
	gone := fmt.Sprintf("%s.tmp-gone-%d", dir, time.Now().UnixNano())
	if os.Rename(dir, gone) == nil {
		fsutil.RemoveTree(gone)
	}
}

// openTemplate returns the template in dir if it is whole: a memory file
// of the machine's size (QEMU would create a missing one, and resume the
// guest on zeroed RAM), a state and the hello.
func openTemplate(dir string, memMiB int) (*template, error) {
	if fi, err := os.Stat(filepath.Join(dir, templateMemory)); err != nil {
		return nil, err
	} else if fi.Size() != int64(memMiB)<<20 {
		return nil, fmt.Errorf("template memory of %d bytes, want %d MiB", fi.Size(), memMiB)
	}
	b, err := os.ReadFile(filepath.Join(dir, templateHello))
	if err != nil {
		return nil, err
	}
	if len(b) > agentproto.MaxControlPayload {
		return nil, fmt.Errorf("template hello of %d bytes", len(b))
	}
	t := &template{dir: dir}
	if err := json.Unmarshal(b, &t.hello); err != nil {
		return nil, err
	}
	// The state's modification time says when the template was last
	// used, for removeStaleTemplates.
	now := time.Now()
	if err := os.Chtimes(filepath.Join(dir, templateState), now, now); err != nil {
		return nil, err
	}
	return t, nil
}

// makeTemplate boots spec with its RAM shared into a new file, waits for
// the agent's hello, saves the machine's state and names the result dir.
// Only one pyro makes a given template: another one boots cold meanwhile.
func makeTemplate(ctx context.Context, o Options, spec vmm.Spec, dir string) (*template, error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, errNoTemplate
	}
	lock, ok, err := fsutil.TryLock(dir + ".lock")
	if err != nil || !ok {
		return nil, errNoTemplate
	}
	defer lock.Unlock()
	if t, err := openTemplate(dir, spec.MemMiB); err == nil && !o.RemakeTemplate {
		return t, nil // made by another pyro since this one looked
	}
	removeStaleTemplates(parent, time.Now().Add(-staleTemplate), maxTemplates-1)
	// Attempts at this key that were killed left their work: with the
	// lock held, none of it is live.
	if old, err := filepath.Glob(dir + ".tmp-*"); err == nil {
		for _, p := range old {
			fsutil.RemoveTree(p)
		}
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(dir)+".tmp-")
	if err != nil {
		return nil, errNoTemplate
	}
	if o.Phase != nil {
		o.Phase("template", "detail", "first boot of this environment and size: making the snapshot later runs restore")
	}
	defer os.RemoveAll(tmp)
	t, err := saveTemplate(ctx, o, spec, tmp)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			// Remember for a while, so that each boot does not pay for
			// another attempt; the cold boot that follows says what is
			// wrong if the machine cannot boot at all. A boot that only
			// ran out of time (a busy host) is tried again next time.
			os.WriteFile(dir+templateFailed, []byte(err.Error()+"\n"), 0o644)
		}
		return nil, err
	}
	os.Remove(dir + templateFailed)
	// The template of this key, broken or remade, is replaced.
	discardTemplate(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, errNoTemplate
	}
	fsutil.SyncDir(parent)
	t.dir = dir
	return t, nil
}

func saveTemplate(ctx context.Context, o Options, spec vmm.Spec, dir string) (*template, error) {
	spec.ID = "template-" + filepath.Base(dir)
	spec.Memory = &vmm.MemoryFile{Path: filepath.Join(dir, templateMemory), Shared: true}
	spec.Console = &vmm.Ring{Size: 4 << 10}
	m, err := o.Backend.Start(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("starting the template's machine: %w", err)
	}
	defer m.Kill()
	saver, ok := m.(vmm.Snapshotter)
	if !ok {
		return nil, fmt.Errorf("the %s backend cannot save a machine's state", o.Backend.Name())
	}
	bootCtx, cancel := context.WithTimeout(ctx, o.BootTimeout)
	defer cancel()
	hello, err := agentproto.ReadHello(bootCtx, m.Agent())
	if err != nil && bootCtx.Err() != nil {
		return nil, fmt.Errorf("booting the template's machine: %w", bootCtx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("booting the template's machine: %w (%s)", err, strings.TrimSpace(m.Diagnostics()))
	}
	state, err := os.Create(filepath.Join(dir, templateState))
	if err != nil {
		return nil, err
	}
	defer state.Close()
	if err := saver.SaveState(bootCtx, state); err != nil {
		if bootCtx.Err() != nil {
			return nil, fmt.Errorf("saving the template's state: %w", bootCtx.Err())
		}
		return nil, err
	}
	m.Kill()
	// Both files must reach the disk before the template is named: a
	// restore from a state whose RAM is half written would run garbage.
	if err := state.Sync(); err != nil {
		return nil, err
	}
	if err := syncFile(spec.Memory.Path); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(hello)
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, templateHello), b, 0o644); err != nil {
		return nil, err
	}
	return &template{dir: dir, hello: hello}, nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// restore starts the machine of spec from template t and answers its
// agent's hello. On error nothing of the machine is left.
func restore(ctx context.Context, o Options, spec vmm.Spec, t *template, v *VM) error {
	state, err := os.Open(filepath.Join(t.dir, templateState))
	if err != nil {
		return err
	}
	spec.Memory = &vmm.MemoryFile{Path: filepath.Join(t.dir, templateMemory)}
	spec.Restore = state
	rctx, cancel := context.WithTimeout(ctx, min(o.BootTimeout, restoreTimeout))
	defer cancel()
	start := time.Now()
	m, err := o.Backend.Start(rctx, spec)
	state.Close()
	if err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("restoring from template %s: %w", filepath.Base(t.dir), rctx.Err())
		}
		return err
	}
	v.Timings.VMMStart = time.Since(start)
	sess, err := agentproto.Resume(rctx, m.Agent(), t.hello, agentproto.Config{})
	if err == nil {
		// The answer is written blind: a ping proves the restored agent
		// read it and serves.
		if _, err = sess.Ping(rctx); err != nil {
			sess.Close()
		}
	}
	if err != nil {
		m.Kill()
		if ctx.Err() != nil {
			return errs.Wrap(errs.KindOf(ctx.Err()), ctx.Err(), "", "booting the VM was interrupted")
		}
		if rctx.Err() != nil {
			err = rctx.Err()
		}
		return fmt.Errorf("restoring from template %s: %w (%s)", filepath.Base(t.dir), err, strings.TrimSpace(m.Diagnostics()))
	}
	v.Machine, v.Session, v.Hello, v.Restored = m, sess, t.hello, true
	v.Timings.Boot = time.Since(start)
	return nil
}

// maxTemplates bounds the templates kept: each size and each pyro build
// makes its own, and each takes ~100 MiB.
const maxTemplates = 8

// removeStaleTemplates removes the templates of dir last used before
// cutoff or beyond the keep most recently used, and what failed or
// interrupted attempts left. A machine restored from a removed template
// keeps its RAM mapped: removing is safe.
func removeStaleTemplates(dir string, cutoff time.Time, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type used struct {
		path string
		at   time.Time
	}
	var templates []used
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if strings.HasSuffix(e.Name(), ".lock") {
			// Another pyro may hold it: removing it would let a third
			// make the same template at once.
			continue
		}
		fi, err := os.Stat(p)
		if e.IsDir() && !strings.Contains(e.Name(), ".tmp-") {
			if fi, err = os.Stat(filepath.Join(p, templateState)); err == nil {
				templates = append(templates, used{p, fi.ModTime()})
			}
		}
		if err == nil && fi.ModTime().Before(cutoff) {
			discardTemplate(p)
		}
	}
	slices.SortFunc(templates, func(a, b used) int { return b.at.Compare(a.at) })
	for i, t := range templates {
		if i >= keep && !t.at.Before(cutoff) {
			discardTemplate(t.path)
		}
	}
}

// TemplateSummary says what templates a cache holds, for the doctor.
type TemplateSummary struct {
	Count int
	Bytes int64 // disk space they take
	// Failures are the reasons templates could not be made lately: runs
	// of those keys boot cold until the marker expires.
	Failures []string
}

// Templates summarises the templates of the environment cache in dir.
func Templates(cacheDir string) TemplateSummary {
	var s TemplateSummary
	root := TemplatesDir(cacheDir)
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		p := filepath.Join(root, e.Name())
		switch {
		case e.IsDir() && !strings.Contains(e.Name(), ".tmp-"):
			s.Count++
			s.Bytes += fsutil.DiskUsage(p)
		case strings.HasSuffix(e.Name(), templateFailed):
			fi, err := e.Info()
			if err != nil || time.Since(fi.ModTime()) >= failedTemplateTTL {
				continue
			}
			if b, err := os.ReadFile(p); err == nil {
				s.Failures = append(s.Failures, strings.TrimSpace(string(b[:min(len(b), 512)])))
			}
		}
	}
	return s
}
