// The CNCF distribution registry (github.com/distribution/distribution/v3) with only the storage
// driver the dev cluster uses: its own cmd/registry/main.go, less the cloud storage drivers
// (Azure, GCS, S3), their middlewares, the pull-through proxy and the auth backends, which would
// add minutes of compile time for nothing here. Built by hack/build-registry.sh.
package main

import (
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	// `registry serve CONFIG`; cobra prints the error and exits non-zero itself.
	_ = registry.RootCmd.Execute()
}
