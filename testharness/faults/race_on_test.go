//go:build race

package faults_test

// raceBuild: this test binary runs under the race detector, so TestMain
// builds the daemon with -race too.
const raceBuild = true
