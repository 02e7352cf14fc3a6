// Command coredns is CoreDNS built with only the plugins the dev cluster's DNS uses (the documented
// way to compile CoreDNS with a chosen plugin set: its own main with the plugin packages imported
// and dnsserver.Directives in CoreDNS's plugin.cfg order). It serves cluster.local from the
// Kubernetes API (the `kubernetes` plugin), as the cluster DNS of every Kubernetes distribution.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The subset of plugin.cfg, in its order (the order plugins handle a query).
var directives = []string{"ready", "health", "errors", "loadbalance", "cache", "kubernetes", "loop"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
