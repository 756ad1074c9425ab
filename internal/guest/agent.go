package guest

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/buildinfo"
)

// AgentPortName is the name of the virtio-serial port the host connects
// the agent channel to.
const AgentPortName = "org.pyro.agent"

// agent serves the host's requests inside the guest.
type agent struct {
	reaper   *reaper
	env      []string
	poweroff func()
	// inVM: the machine is the agent's own, so it takes the host's clock
	// and entropy. A host-compat agent shares the host's kernel: setting
	// the clock would set the host's.
	inVM bool
}

// serve speaks the agent protocol on conn until the host ends the session.
func (a *agent) serve(conn io.ReadWriteCloser) error {
	hello := agentproto.Hello{
		Versions:     []int{agentproto.Version},
		Agent:        buildinfo.Version(),
		Kernel:       kernelRelease(),
		UptimeMillis: uptimeMillis(),
		Boot:         bootSteps,
	}
	// No request is served before the host's clock and entropy are in:
	// in a machine restored from a template, the first command must
	// neither see the template's time nor share its randomness.
	ready := make(chan struct{})
	handle := func(st *agentproto.Stream, open agentproto.Open) {
		<-ready
		a.handle(st, open)
	}
	sess, ack, err := agentproto.Serve(conn, hello, agentproto.Config{}, handle)
	if err != nil {
		return err
	}
	if a.inVM {
		applyHostState(ack)
	}
	close(ready)
	<-sess.Done()
	return sess.Err()
}

func (a *agent) handle(st *agentproto.Stream, open agentproto.Open) {
	switch open.Op {
	case agentproto.OpExec:
		a.serveExec(st, open.Body)
	case agentproto.OpShutdown:
		st.CloseSend()
		if a.poweroff != nil {
			a.poweroff()
		}
	default:
		if err := a.serveWorkspaceOp(st, open.Op, open.Body); err != nil {
			st.Abort(err)
			return
		}
		st.CloseSend()
	}
}

// applyHostState adopts the host's clock and its entropy. Failures only
// cost accuracy, so they are ignored.
func applyHostState(ack agentproto.HelloAck) {
	if ack.UnixNano > 0 {
		tv := unix.NsecToTimeval(ack.UnixNano)
		unix.Settimeofday(&tv)
	}
	if len(ack.Entropy) > 0 {
		seedRandom(ack.Entropy)
	}
}

// Ioctls of the kernel's random device (linux/random.h), which
// golang.org/x/sys does not name.
const (
	rndAddEntropy  = 0x40085203 // _IOW('R', 0x03, int[2])
	rndReseedCRNG  = 0x5207     // _IO('R', 0x07)
	maxSeedEntropy = 256
)

// seedRandom credits the host's entropy to the kernel's pool and reseeds
// its generator at once. A machine restored from a template would
// otherwise hand out the same random numbers as every other clone of it,
// until the kernel's next scheduled reseed.
func seedRandom(entropy []byte) {
	if len(entropy) > maxSeedEntropy {
		entropy = entropy[:maxSeedEntropy]
	}
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	// struct rand_pool_info: entropy_count (bits), buf_size (bytes), buf.
	info := make([]byte, 8+len(entropy))
	binary.NativeEndian.PutUint32(info[0:], uint32(8*len(entropy)))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(entropy)))
	copy(info[8:], entropy)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndAddEntropy, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		// Without CAP_SYS_ADMIN the bytes can still be mixed in.
		f.Write(entropy)
		return
	}
	unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndReseedCRNG, 0)
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func uptimeMillis() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano()).Milliseconds()
}

// findPort returns the device of the virtio-serial port named name. With no
// udev there is no /dev/virtio-ports link: the name is in sysfs.
func findPort(name string) (string, error) {
	dirs, _ := filepath.Glob("/sys/class/virtio-ports/*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "name"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(d), nil
		}
	}
	return "", fmt.Errorf("no virtio-serial port named %s (found %d ports)", name, len(dirs))
}
