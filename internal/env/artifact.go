package env

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/fsutil"
	"github.com/pyro-sandbox/pyro/internal/progress"
)

// Media types of an environment artifact (docs/environments.md).
const (
	ArtifactType      = "application/vnd.pyro.environment.v1"
	ConfigMediaType   = "application/vnd.pyro.environment.config.v1+json"
	KernelMediaType   = "application/vnd.pyro.kernel.v1"
	ModulesMediaType  = "application/vnd.pyro.initramfs.modules.v1+cpio"
	RootfsMediaType   = "application/vnd.pyro.rootfs.ext4.v1"
	maxConfigBytes    = 4 << 20
	maxArtifactLayers = 8
)

// DefaultRegistry is where the catalog's artifacts are published;
// $PYRO_REGISTRY (or --registry) points pulls at a mirror.
const DefaultRegistry = "ghcr.io/pyro-sandbox/environments"

// Registry returns the registry the catalog is pulled from.
func Registry(flag string) string {
	if flag != "" {
		return strings.TrimSuffix(flag, "/")
	}
	if r := os.Getenv("PYRO_REGISTRY"); r != "" {
		return strings.TrimSuffix(r, "/")
	}
	return DefaultRegistry
}

// ArtifactRef is the reference of a catalog entry's artifact in registry:
// <registry>/<repository>:<tag>-v<recipe>, e.g. .../debian:12-base-v2.
func ArtifactRef(registry string, s Spec) string {
	repo, tag, _ := strings.Cut(s.Name, ":")
	return fmt.Sprintf("%s/%s:%s-v%s", registry, repo, tag, s.Version)
}

// fileLayer is a blob of the cache as a registry layer.
type fileLayer struct {
	path      string
	blob      Blob
	mediaType types.MediaType
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return v1.NewHash(l.blob.Digest) }
func (l *fileLayer) Size() (int64, error)                { return l.blob.Size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }

// artifactImage is an installed environment as an OCI artifact.
type artifactImage struct {
	manifest []byte
	config   []byte
	layers   map[string]*fileLayer
}

func (a *artifactImage) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *artifactImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifactImage) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifactImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.layers[h.String()]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("no layer %s", h)
}

// Artifact builds the OCI artifact of an installed environment.
func (c *Cache) Artifact(m *Manifest) (v1.Image, error) {
	cfg := *m
	cfg.Source = ""
	config, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(config)
	a := &artifactImage{config: config, layers: map[string]*fileLayer{}}
	mf := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config: v1.Descriptor{MediaType: ConfigMediaType, Size: int64(len(config)),
			Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}},
		Annotations: map[string]string{
			"org.opencontainers.image.title":   m.Name,
			"org.opencontainers.image.version": m.Version,
			"org.opencontainers.image.created": m.CreatedAt.UTC().Format(time.RFC3339),
		},
	}
	for _, part := range []struct {
		blob Blob
		mt   types.MediaType
		file string
	}{
		{m.Kernel.Blob, KernelMediaType, "vmlinux"},
		{m.Modules, ModulesMediaType, "modules.cpio"},
		{m.Rootfs, RootfsMediaType, "rootfs.ext4"},
	} {
		l := &fileLayer{path: c.BlobPath(part.blob.Digest), blob: part.blob, mediaType: part.mt}
		a.layers[part.blob.Digest] = l
		h, _ := l.Digest()
		mf.Layers = append(mf.Layers, v1.Descriptor{MediaType: part.mt, Size: part.blob.Size, Digest: h,
			Annotations: map[string]string{"org.opencontainers.image.title": part.file}})
	}
	if a.manifest, err = json.Marshal(mf); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(a)
}

// remoteOptions are the options of every registry call: the caller's
// context, credentials from the docker config, and a transport that fails
// fast when the registry cannot be reached.
func remoteOptions(ctx context.Context) []remote.Option {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = dialer.DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = 30 * time.Second
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(tr)}
}

// Push writes an installed environment to ref: a registry reference, or
// "oci:DIR" for an OCI image layout directory.
func (c *Cache) Push(ctx context.Context, m *Manifest, ref string, rep progress.Reporter) (string, error) {
	img, err := c.Artifact(m)
	if err != nil {
		return "", err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	if dir, ok := strings.CutPrefix(ref, "oci:"); ok {
		p, err := layout.FromPath(dir)
		if err != nil {
			if p, err = layout.Write(dir, emptyIndex{}); err != nil {
				return "", fmt.Errorf("creating the OCI layout %s: %w", dir, err)
			}
		}
		if err := p.AppendImage(img); err != nil {
			return "", fmt.Errorf("writing to %s: %w", dir, err)
		}
		return digest.String(), nil
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", errs.Wrap(errs.Invalid, err, "use REGISTRY/REPOSITORY:TAG or oci:DIR", "malformed reference %q", ref)
	}
	updates := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range updates {
			rep.Update(u.Complete, u.Total, "push "+r.Context().Name())
		}
	}()
	err = remote.Write(r, img, append(remoteOptions(ctx), remote.WithProgress(updates))...)
	<-done
	if err != nil {
		return "", classifyRegistryError(err, ref)
	}
	return digest.String(), nil
}

// emptyIndex is an empty OCI index, to start a layout directory.
type emptyIndex struct{}

func (emptyIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }
func (emptyIndex) Digest() (v1.Hash, error)            { return partial.Digest(emptyIndex{}) }
func (emptyIndex) Size() (int64, error)                { return partial.Size(emptyIndex{}) }
func (emptyIndex) IndexManifest() (*v1.IndexManifest, error) {
	return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}, nil
}
func (e emptyIndex) RawManifest() ([]byte, error) {
	m, _ := e.IndexManifest()
	return json.Marshal(m)
}
func (emptyIndex) Image(v1.Hash) (v1.Image, error) { return nil, errors.New("empty index") }
func (emptyIndex) ImageIndex(v1.Hash) (v1.ImageIndex, error) {
	return nil, errors.New("empty index")
}

// ErrRegistryUnavailable marks a pull that could not reach the registry or
// found nothing there: the caller may build instead.
var ErrRegistryUnavailable = errors.New("registry copy unavailable")

func classifyRegistryError(err error, ref string) error {
	var te *transport.Error
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
		return errs.Wrap(errs.NotFound, fmt.Errorf("%w: %v", ErrRegistryUnavailable, err), "check the reference, or build locally", "%s not found in the registry", ref)
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		return errs.Wrap(errs.Unavailable, fmt.Errorf("%w: %v", ErrRegistryUnavailable, err), "log in with 'docker login' (pyro reads ~/.docker/config.json)", "the registry refused access to %s", ref)
	}
	if strings.Contains(err.Error(), "error verifying") {
		return errs.Wrap(errs.Invalid, err, "pull again; if it persists the registry copy is damaged", "a blob of %s failed verification (corrupted or truncated in transit, or damaged in the registry); nothing was installed", ref)
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &oe) || strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host") {
		return errs.Wrap(errs.Unavailable, fmt.Errorf("%w: %v", ErrRegistryUnavailable, err), "check the network, or set PYRO_REGISTRY to a mirror", "cannot reach the registry of %s", ref)
	}
	return errs.Wrap(errs.Unavailable, err, "", "registry %s", ref)
}

// PullArtifact fetches the environment artifact at ref into the cache and
// installs it as name. Every blob is verified against its digest as it
// streams to disk; the manifest is installed last.
func (c *Cache) PullArtifact(ctx context.Context, ref, wantName string, rep progress.Reporter) (*Manifest, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "use REGISTRY/REPOSITORY:TAG", "malformed reference %q", ref)
	}
	img, err := remote.Image(r, remoteOptions(ctx)...)
	if err != nil {
		return nil, classifyRegistryError(err, ref)
	}
	mf, err := img.Manifest()
	if err != nil {
		return nil, classifyRegistryError(err, ref)
	}
	if mf.Config.MediaType != ConfigMediaType || len(mf.Layers) != 3 || len(mf.Layers) > maxArtifactLayers {
		return nil, errs.New(errs.Invalid, "pull a pyro environment artifact (see docs/environments.md)", "%s is not a pyro environment artifact", ref)
	}
	if mf.Config.Size <= 0 || mf.Config.Size > maxConfigBytes {
		return nil, errs.New(errs.Invalid, "", "%s has a config of %d bytes", ref, mf.Config.Size)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, classifyRegistryError(err, ref)
	}
	m, err := parseManifest(raw)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "", "%s has a malformed environment config", ref)
	}
	if wantName != "" && m.Name != wantName {
		return nil, errs.New(errs.Invalid, "", "%s holds environment %q, not %q", ref, m.Name, wantName)
	}
	// The layers must be exactly the blobs the config names, in order.
	want := []struct {
		blob Blob
		mt   types.MediaType
	}{{m.Kernel.Blob, KernelMediaType}, {m.Modules, ModulesMediaType}, {m.Rootfs, RootfsMediaType}}
	var total int64
	for i, w := range want {
		d := mf.Layers[i]
		if d.MediaType != w.mt || d.Digest.String() != w.blob.Digest || d.Size != w.blob.Size {
			return nil, errs.New(errs.Invalid, "", "%s: layer %d does not match the environment's config", ref, i)
		}
		if _, err := os.Stat(c.BlobPath(w.blob.Digest)); err != nil {
			total += w.blob.Size
		}
	}
	if err := c.checkSpace(total); err != nil {
		return nil, err
	}
	var done int64
	for _, w := range want {
		if fi, err := os.Stat(c.BlobPath(w.blob.Digest)); err == nil && fi.Size() == w.blob.Size {
			continue // shared with another environment, or left by an earlier pull
		}
		h, _ := v1.NewHash(w.blob.Digest)
		layer, err := img.LayerByDigest(h)
		if err != nil {
			return nil, classifyRegistryError(err, ref)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, classifyRegistryError(err, ref)
		}
		rep.Phase("blob", "environment", m.Name, "digest", w.blob.Digest, "size", fmt.Sprint(w.blob.Size))
		// go-containerregistry checks the blob's size and digest as it
		// ends (a mismatch is an error from the reader); hashing it again
		// here would only halve the throughput.
		err = c.putStream(ctx, rc, w.blob, func(n int64) { rep.Update(done+n, total, "pull "+m.Name) })
		rc.Close()
		if err != nil {
			return nil, err
		}
		done += w.blob.Size
	}
	m.Source = ref
	if d, err := img.Digest(); err == nil {
		m.Source = r.Context().Name() + "@" + d.String()
	}
	if err := c.Install(m); err != nil {
		return nil, err
	}
	return m, nil
}

// checkSpace refuses a pull that would not fit, before it starts.
func (c *Cache) checkSpace(need int64) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(c.Dir, &st); err != nil {
		return nil
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	const margin = 256 << 20
	if need+margin > free {
		return errs.New(errs.Unavailable, "free space (pyro env prune removes what nothing uses) or set PYRO_ENV_CACHE elsewhere",
			"not enough disk space in %s: the pull needs %d MiB, %d MiB are free", c.Dir, (need+margin)>>20, free>>20)
	}
	return nil
}

// putStream writes a blob from r into the store, checking its size; r
// checks the digest (go-containerregistry's layer readers fail at the end
// on a mismatch). A blob that does not verify never enters the store.
func (c *Cache) putStream(ctx context.Context, r io.Reader, want Blob, progressFn func(int64)) error {
	tmpDir, err := c.TempDir("blob-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "blob")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	var last time.Time
	n, err := copySparse(ctx, f, io.LimitReader(r, want.Size+1), func(n int64) {
		if progressFn != nil && time.Since(last) > 100*time.Millisecond {
			last = time.Now()
			progressFn(n)
		}
	})
	if err == nil {
		// Durable before it is named: a crash must not leave a blob in
		// the store whose bytes never reached the disk.
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return classifyRegistryError(err, want.Digest)
	}
	if n != want.Size {
		return errs.New(errs.Invalid, "pull again; if it persists the registry copy is damaged", "blob %s is %d bytes, want %d (truncated?)", want.Digest, n, want.Size)
	}
	return c.installVerified(tmp, want)
}

// installVerified moves a file whose digest was checked into the store.
func (c *Cache) installVerified(path string, b Blob) error {
	dst := c.BlobPath(b.Digest)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(path, 0o444); err != nil {
		return err
	}
	if err := os.Rename(path, dst); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(dst))
}
