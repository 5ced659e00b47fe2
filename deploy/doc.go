// Package deploy holds the deployment files of animesync — the container
// build, the compose file, the systemd unit, the Kubernetes manifests and the
// environment example — and, in its tests, the checks that can run without
// Docker or a cluster: every file parses and says what it must, and the
// binary runs the way the systemd unit starts it.
package deploy
