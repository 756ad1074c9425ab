// Command floorinit is the init of the benchmark's floor: a guest that
// powers off the moment the kernel starts it. Booting it measures what the
// VMM and kernel cost before pyro's own work begins.
//
// With floor_report=1 on the kernel command line (the kernel hands such
// words to init as environment variables) it first writes its uptime to
// the console: the benchmark's diagnostic boots, never the timed ones. It
// uses package syscall alone, so the timed init stays as small as it was.
package main

import "syscall"

func main() {
	if _, ok := syscall.Getenv("floor_report"); ok {
		report()
	}
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}

func report() {
	syscall.Mkdir("/proc", 0o555)
	syscall.Mount("proc", "/proc", "proc", 0, "")
	fd, err := syscall.Open("/proc/uptime", syscall.O_RDONLY, 0)
	if err != nil {
		return
	}
	buf := make([]byte, 64)
	n, _ := syscall.Read(fd, buf)
	syscall.Close(fd)
	if c, err := syscall.Open("/dev/console", syscall.O_WRONLY, 0); err == nil && n > 0 {
		syscall.Write(c, append([]byte("floor-uptime "), buf[:n]...))
		syscall.Close(c)
	}
}
