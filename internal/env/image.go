package env

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/fsutil"
	"github.com/pyro-sandbox/pyro/internal/oci/flatten"
	"github.com/pyro-sandbox/pyro/internal/progress"
)

// IsImageRef says whether an environment name is an OCI image reference
// rather than a catalog name: it names a registry host or a repository
// path ("docker.io/library/alpine:3.20", "127.0.0.1:5000/team/env:tag").
func IsImageRef(s string) bool {
	if _, err := Lookup(s); err == nil {
		return false
	}
	return strings.Contains(s, "/")
}

// NormalizeImageRef returns the canonical form of an image reference, the
// name the environment is installed under.
func NormalizeImageRef(s string) (string, error) {
	r, err := name.ParseReference(s)
	if err != nil {
		return "", errs.Wrap(errs.Invalid, err, "use REGISTRY/REPOSITORY[:TAG|@DIGEST], e.g. docker.io/library/alpine:3.20", "malformed image reference %q", truncate(s, 120))
	}
	return r.Name(), nil
}

// CanonicalName validates an environment name and returns the name it is
// installed under, and whether it is an OCI image reference (normalized)
// rather than a catalog name (unchanged).
func CanonicalName(s string) (canonical string, image bool, err error) {
	if err := ValidateName(s); err != nil {
		return "", false, err
	}
	if !IsImageRef(s) {
		return s, false, nil
	}
	norm, err := NormalizeImageRef(s)
	return norm, true, err
}

// KernelSource finds the catalog kernel an image boots with: the kernel
// and modules of an installed catalog environment.
func (c *Cache) KernelSource() (*Manifest, error) {
	for _, s := range Catalog() {
		if m, err := c.Installed(s.Name); err == nil {
			return m, nil
		}
	}
	return nil, errs.New(errs.NotFound, "pull a catalog environment first: pyro env pull debian:12-base", "no catalog environment is installed to take the kernel from")
}

// imageBounds limit what an image may make pyro write.
var imageBounds = flatten.Options{MaxFiles: 2 << 20, MaxBytes: 32 << 30}

// PullImage makes any OCI image an environment: its layers (linux/amd64)
// are flattened into a root filesystem with whiteouts applied and every
// path confined (device nodes are never created on the host), pyro's
// files are added, and it boots with the kernel of kernelFrom. The image
// config's Env and WorkingDir are kept for exec.
func (c *Cache) PullImage(ctx context.Context, ref string, kernelFrom *Manifest, rep progress.Reporter) (*Manifest, error) {
	norm, err := NormalizeImageRef(ref)
	if err != nil {
		return nil, err
	}
	r, _ := name.ParseReference(norm)
	img, err := remote.Image(r, append(remoteOptions(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))...)
	if err != nil {
		return nil, classifyRegistryError(err, norm)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, classifyRegistryError(err, norm)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, classifyRegistryError(err, norm)
	}
	if cfg.OS != "" && cfg.OS != "linux" || cfg.Architecture != "" && cfg.Architecture != "amd64" {
		return nil, errs.New(errs.Invalid, "use a linux/amd64 image", "%s is %s/%s", norm, cfg.OS, cfg.Architecture)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, classifyRegistryError(err, norm)
	}
	var need int64
	for _, l := range layers {
		if n, err := l.Size(); err == nil {
			need += n * 3 // compressed download, unpacked tree, image
		}
	}
	if err := c.checkSpace(need); err != nil {
		return nil, err
	}
	work, err := c.TempDir("image-")
	if err != nil {
		return nil, err
	}
	defer fsutil.RemoveTree(work)
	root := filepath.Join(work, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	stats := &flatten.Stats{}
	for i, l := range layers {
		rep.Phase("layer", "environment", norm, "layer", fmt.Sprintf("%d/%d", i+1, len(layers)))
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, classifyRegistryError(err, norm)
		}
		err = flatten.Apply(ctx, root, rc, &imageBounds, stats)
		rc.Close()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errs.Wrap(errs.Invalid, err, "the image's layers are refused; nothing was installed", "unpacking layer %d of %s", i+1, norm)
		}
	}
	if err := prepareImageRoot(root); err != nil {
		return nil, err
	}
	rep.Phase("image", "environment", norm)
	rootfs, err := c.makeRootfsImage(ctx, work, root)
	if err != nil {
		return nil, err
	}
	m := &Manifest{
		Schema:      ManifestSchema,
		Name:        norm,
		Version:     digest.String(),
		Description: "OCI image " + norm,
		Source:      r.Context().Name() + "@" + digest.String(),
		CreatedAt:   time.Now().UTC().Truncate(time.Second),
		Kernel:      kernelFrom.Kernel,
		Modules:     kernelFrom.Modules,
		Rootfs:      rootfs,
		Packages:    []Package{},
		Image:       &ImageConfig{Env: cfg.Config.Env, WorkingDir: cfg.Config.WorkingDir, User: cfg.Config.User},
	}
	if err := c.Install(m); err != nil {
		return nil, err
	}
	return m, nil
}

// prepareImageRoot adds what pyro's guest needs to an image's tree: the
// mount points, /workspace, and name resolution files.
func prepareImageRoot(root string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "workspace", "etc", "root"} {
		if fi, err := r.Lstat(d); err == nil && !fi.IsDir() {
			// A symlink or file where pyro mounts: replace it.
			if err := r.Remove(d); err != nil {
				return err
			}
		}
		if err := r.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("preparing /%s: %w", d, err)
		}
	}
	r.Chmod("tmp", 0o1777|fs.ModeDir)
	for name, content := range map[string]string{
		"etc/hostname": "pyro\n",
		"etc/hosts":    "127.0.0.1\tlocalhost\n127.0.1.1\tpyro\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	} {
		r.Remove(name)
		if err := r.WriteFile(name, []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing /%s: %w", name, err)
		}
	}
	if _, err := r.Lstat("etc/resolv.conf"); err != nil {
		r.WriteFile("etc/resolv.conf", nil, 0o644)
	}
	return nil
}

// makeRootfsImage turns a tree into a read-only ext4 blob: no journal
// (nothing ever writes to it), no reserved blocks, sized to its content.
func (c *Cache) makeRootfsImage(ctx context.Context, work, root string) (Blob, error) {
	var bytes, inodes int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inodes++
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			bytes += (fi.Size() + 4095) / 4096 * 4096
		}
		return nil
	})
	if err != nil {
		return Blob{}, err
	}
	size := (bytes + inodes*256 + bytes/10 + 64<<20) / (1 << 20)
	img := filepath.Join(work, "rootfs.ext4")
	b := &build{Builder: &Builder{Cache: c}, rep: progress.Nop{}}
	err = b.runLogged(ctx, "mkfs.ext4", nil, "mkfs.ext4", "-q", "-F", "-L", "pyro-root",
		"-O", "^has_journal", "-m", "0", "-N", strconv.FormatInt(inodes+inodes/5+1024, 10),
		"-d", root, img, strconv.FormatInt(size, 10)+"M")
	if err != nil {
		return Blob{}, err
	}
	return c.PutFile(img)
}
