// Package version names this build of animesync.
package version

// Version is set at link time (-ldflags "-X github.com/animesync/animesync/shared/version.Version=…").
var Version = "0.1.0-dev"
