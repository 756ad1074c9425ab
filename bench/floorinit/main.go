// Command floorinit is the init of the benchmark's floor: a guest that
// powers off the moment the kernel starts it. Booting it measures what the
// VMM and kernel cost before pyro's own work begins.
package main

import "syscall"

func main() {
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
