package env

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/fsutil"
	"github.com/pyro-sandbox/pyro/internal/initramfs"
	"github.com/pyro-sandbox/pyro/internal/kernel"
	"github.com/pyro-sandbox/pyro/internal/proc"
	"github.com/pyro-sandbox/pyro/internal/progress"
	"github.com/pyro-sandbox/pyro/internal/vmm"
)

// Default Debian mirrors; $PYRO_DEBIAN_MIRROR and $PYRO_DEBIAN_SECURITY_MIRROR
// override them.
const (
	DefaultMirror         = "http://deb.debian.org/debian"
	DefaultSecurityMirror = "http://deb.debian.org/debian-security"
)

// Builder builds catalog environments from Debian packages with
// debootstrap. It needs root, debootstrap, dpkg-deb and mkfs.ext4.
type Builder struct {
	Cache *Cache
	// Mirror and SecurityMirror default to $PYRO_DEBIAN_MIRROR and
	// $PYRO_DEBIAN_SECURITY_MIRROR, then to Debian's CDN.
	Mirror, SecurityMirror string
	Progress               progress.Reporter
}

// BuildTools are the host programs a local build runs.
var BuildTools = []string{"debootstrap", "dpkg-deb", "mkfs.ext4", "chroot", "unshare"}

// CheckBuildHost says what the host lacks to build environments.
func CheckBuildHost() error {
	if os.Geteuid() != 0 {
		return errs.New(errs.Unavailable, "run 'pyro env pull' as root, or pull from a registry that has the environment",
			"building an environment locally needs root (debootstrap creates a Debian root filesystem)")
	}
	var missing []string
	for _, t := range BuildTools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return errs.New(errs.Unavailable, "on Debian: apt-get install debootstrap dpkg e2fsprogs coreutils util-linux",
			"building an environment locally needs %s, not found in PATH", strings.Join(missing, ", "))
	}
	return nil
}

func (b *Builder) reporter() progress.Reporter {
	if b.Progress == nil {
		return progress.Nop{}
	}
	return b.Progress
}

func orEnv(v, key, def string) string {
	if v != "" {
		return v
	}
	if e := os.Getenv(key); e != "" {
		return e
	}
	return def
}

// Build builds spec into the cache and installs it. The caller holds the
// environment's lock. On any failure or cancellation the work directory is
// removed and nothing is installed.
func (b *Builder) Build(ctx context.Context, spec Spec) (*Manifest, error) {
	if err := CheckBuildHost(); err != nil {
		return nil, err
	}
	work, err := b.Cache.TempDir("build-")
	if err != nil {
		return nil, err
	}
	defer fsutil.RemoveTree(work)
	bd := &build{
		Builder: b,
		spec:    spec,
		work:    work,
		root:    filepath.Join(work, "rootfs"),
		mirror:  orEnv(b.Mirror, "PYRO_DEBIAN_MIRROR", DefaultMirror),
		secMir:  orEnv(b.SecurityMirror, "PYRO_DEBIAN_SECURITY_MIRROR", DefaultSecurityMirror),
		rep:     b.reporter(),
	}
	m, err := bd.run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errs.Wrap(errs.KindOf(ctx.Err()), ctx.Err(), "run 'pyro env pull' again", "building %s was interrupted", spec.Name)
		}
		return nil, err
	}
	return m, nil
}

type build struct {
	*Builder
	spec           Spec
	work, root     string
	mirror, secMir string
	rep            progress.Reporter
}

func (bd *build) step(name string) {
	bd.rep.Phase("build", "step", name, "environment", bd.spec.Name)
}

func (bd *build) run(ctx context.Context) (*Manifest, error) {
	bd.step("debootstrap")
	if err := bd.debootstrap(ctx); err != nil {
		return nil, err
	}
	bd.step("configure")
	kernelDeb, err := bd.configure(ctx)
	if err != nil {
		return nil, err
	}
	pkgs, err := bd.packages(ctx)
	if err != nil {
		return nil, err
	}
	bd.step("kernel")
	kern, modules, err := bd.kernel(ctx, kernelDeb)
	if err != nil {
		return nil, err
	}
	bd.step("image")
	rootfs, err := bd.image(ctx)
	if err != nil {
		return nil, err
	}
	m := &Manifest{
		Schema:      ManifestSchema,
		Name:        bd.spec.Name,
		Version:     bd.spec.Version,
		Description: bd.spec.Description,
		Source:      "local-build",
		CreatedAt:   time.Now().UTC().Truncate(time.Second),
		Kernel:      kern,
		Modules:     modules,
		Rootfs:      rootfs,
		Packages:    pkgs,
	}
	if err := bd.Cache.Install(m); err != nil {
		return nil, err
	}
	return m, nil
}

// runLogged runs a command, feeding its output lines to onLine and keeping
// the tail for the error message.
//
// Each command runs as PID 1 of its own PID and mount namespaces (through
// util-linux's unshare): when it ends or is killed, every process it
// started dies with it and every mount it made (debootstrap mounts /proc
// and /sys in the target) disappears, so a cancelled build leaves nothing
// running and nothing mounted.
func (bd *build) runLogged(ctx context.Context, what string, onLine func(string), name string, args ...string) error {
	wrapped := append([]string{"--pid", "--mount", "--fork", "--kill-child", "--propagation", "private", name}, args...)
	cmd := exec.Command("unshare", wrapped...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	tail := &vmm.Ring{Size: 4 << 10}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(tail, line)
			if onLine != nil {
				onLine(line)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err := proc.Run(ctx, cmd)
	pw.Close()
	<-done
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errs.Wrap(errs.Unavailable, err, "check the network access to the Debian mirror (set PYRO_DEBIAN_MIRROR for another) and the output above",
			"%s failed; its last output:\n%s", what, strings.TrimSpace(tail.String()))
	}
	return nil
}

func (bd *build) chroot(ctx context.Context, what string, onLine func(string), args ...string) error {
	full := append([]string{bd.root, "/usr/bin/env", "-C", "/tmp", "-i",
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}, args...)
	return bd.runLogged(ctx, what, onLine, "chroot", full...)
}

func (bd *build) debootstrap(ctx context.Context) error {
	debs := filepath.Join(bd.Cache.Dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	// The package cache is shared by builds of different environments.
	lock, err := bd.Cache.Lock(ctx, ".debs", func() {
		bd.rep.Phase("build", "step", "waiting", "reason", "another build is downloading packages")
	})
	if err != nil {
		return err
	}
	defer lock.Unlock()
	var n int64
	onLine := func(line string) {
		if rest, ok := strings.CutPrefix(line, "I: "); ok {
			n++
			bd.rep.Update(n, 0, rest)
		}
	}
	args := []string{"--variant=minbase", "--components=main", "--cache-dir=" + debs}
	if len(bd.spec.Packages) > 0 {
		args = append(args, "--include="+strings.Join(bd.spec.Packages, ","))
	}
	args = append(args, Suite, bd.root, bd.mirror)
	return bd.runLogged(ctx, "debootstrap", onLine, "debootstrap", args...)
}

var kernelDepRE = regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*)`)

// configure brings the root filesystem up to date with Debian's updates and
// security suites, downloads the kernel package and strips what a
// disposable machine does not need.
func (bd *build) configure(ctx context.Context) (string, error) {
	sources := fmt.Sprintf("deb %[1]s %[3]s main\ndeb %[1]s %[3]s-updates main\ndeb %[2]s %[3]s-security main\n", bd.mirror, bd.secMir, Suite)
	if err := os.WriteFile(filepath.Join(bd.root, "etc/apt/sources.list"), []byte(sources), 0o644); err != nil {
		return "", err
	}
	// No package may start a service inside the build chroot.
	policy := filepath.Join(bd.root, "usr/sbin/policy-rc.d")
	if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return "", err
	}
	defer os.Remove(policy)
	if err := bd.chroot(ctx, "apt-get update", nil, "apt-get", "-q", "update"); err != nil {
		return "", err
	}
	if err := bd.chroot(ctx, "apt-get upgrade", nil, "apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confold", "upgrade"); err != nil {
		return "", err
	}
	var depends bytes.Buffer
	if err := bd.chroot(ctx, "apt-cache depends", func(l string) { depends.WriteString(l + "\n") }, "apt-cache", "depends", KernelPackage); err != nil {
		return "", err
	}
	match := kernelDepRE.FindStringSubmatch(depends.String())
	if match == nil {
		return "", errs.New(errs.Unavailable, "check the Debian mirror", "cannot tell which kernel %s depends on", KernelPackage)
	}
	if err := bd.chroot(ctx, "apt-get download "+match[1], nil, "apt-get", "-q", "download", match[1]); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(bd.root, "tmp", match[1]+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download left %d packages for %s", len(debs), match[1])
	}
	kernelDeb := filepath.Join(bd.work, "kernel.deb")
	if err := os.Rename(debs[0], kernelDeb); err != nil {
		return "", err
	}
	if err := bd.chroot(ctx, "apt-get clean", nil, "apt-get", "clean"); err != nil {
		return "", err
	}
	return kernelDeb, bd.tidyRoot()
}

func (bd *build) tidyRoot() error {
	for _, glob := range []string{"var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/log/*.log", "var/log/apt/*", "tmp/*", "var/tmp/*"} {
		matches, _ := filepath.Glob(filepath.Join(bd.root, glob))
		for _, m := range matches {
			if err := fsutil.RemoveTree(m); err != nil {
				return err
			}
		}
	}
	files := map[string]string{
		"etc/hostname":    "pyro\n",
		"etc/hosts":       "127.0.0.1\tlocalhost\n127.0.1.1\tpyro\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/machine-id":  "",
		"etc/resolv.conf": "",
	}
	for name, content := range files {
		p := filepath.Join(bd.root, name)
		os.Remove(p)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return os.MkdirAll(filepath.Join(bd.root, "workspace"), 0o755)
}

func (bd *build) packages(ctx context.Context) ([]Package, error) {
	var pkgs []Package
	err := bd.chroot(ctx, "dpkg-query", func(l string) {
		if name, ver, ok := strings.Cut(l, "\t"); ok {
			pkgs = append(pkgs, Package{Name: name, Version: ver})
		}
	}, "dpkg-query", "-W", "-f", "${Package}\t${Version}\n")
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	return pkgs, err
}

// kernel turns the kernel package into the blobs the guest boots: the
// uncompressed vmlinux (PVH direct boot is faster than a bzImage) and a cpio
// archive of the few modules the initramfs loads.
func (bd *build) kernel(ctx context.Context, deb string) (Kernel, Blob, error) {
	dir := filepath.Join(bd.work, "kernel")
	if err := bd.runLogged(ctx, "dpkg-deb -x", nil, "dpkg-deb", "-x", deb, dir); err != nil {
		return Kernel{}, Blob{}, err
	}
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return Kernel{}, Blob{}, fmt.Errorf("the kernel package holds %d kernel images", len(images))
	}
	release := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	k := Kernel{Release: release, Package: filepath.Base(deb)}
	if out, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version").Output(); err == nil {
		k.Package = strings.Join(strings.Fields(string(out)), " ")
	}
	cfgFile, err := os.Open(filepath.Join(dir, "boot", "config-"+release))
	if err != nil {
		return Kernel{}, Blob{}, err
	}
	cfg, err := kernel.ReadConfig(cfgFile)
	cfgFile.Close()
	if err != nil {
		return Kernel{}, Blob{}, err
	}
	k.HZ = cfg.HZ

	img, err := os.Open(images[0])
	if err != nil {
		return Kernel{}, Blob{}, err
	}
	fi, _ := img.Stat()
	vmlinux, err := kernel.ExtractVmlinux(img, fi.Size())
	img.Close()
	kernelFile := filepath.Join(bd.work, "vmlinux")
	if err == nil && kernel.HasPVHNote(vmlinux) {
		k.PVH = true
		err = os.WriteFile(kernelFile, vmlinux, 0o644)
	} else {
		// Fall back to the bzImage: slower to boot, but it boots.
		err = copyFile(images[0], kernelFile)
	}
	if err != nil {
		return Kernel{}, Blob{}, err
	}
	if k.Blob, err = bd.Cache.PutFile(kernelFile); err != nil {
		return Kernel{}, Blob{}, err
	}

	mods, err := kernel.ResolveModules(filepath.Join(dir, "lib", "modules", release), GuestModules)
	if err != nil {
		return Kernel{}, Blob{}, err
	}
	modFile := filepath.Join(bd.work, "modules.cpio")
	f, err := os.Create(modFile)
	if err != nil {
		return Kernel{}, Blob{}, err
	}
	err = initramfs.WriteModules(f, mods)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Kernel{}, Blob{}, err
	}
	modBlob, err := bd.Cache.PutFile(modFile)
	return k, modBlob, err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// image makes the read-only ext4 image of the root filesystem: no journal
// (nothing ever writes to it), no reserved blocks, sized to its content.
func (bd *build) image(ctx context.Context) (Blob, error) {
	return bd.Cache.makeRootfsImage(ctx, bd.work, bd.root)
}
