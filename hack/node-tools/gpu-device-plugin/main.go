// Command fake-gpu-device-plugin is a DEVELOPMENT-ONLY kubelet device plugin: it advertises
// --count devices of --resource (default nvidia.com/gpu) through the kubelet's device-plugin gRPC
// API (v1beta1), so the scheduler and the kubelet account for GPUs on a machine without any.
// There is no hardware behind the devices: Allocate only hands the container the device IDs in
// NVIDIA_VISIBLE_DEVICES and FINETUNE_FAKE_GPU_IDS.
//
// It serves on <dir>/<name>.sock, registers with <dir>/kubelet.sock, and registers again
// whenever the kubelet restarts (a restarting kubelet removes every socket in <dir>).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	devices []*pluginapi.Device
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the (always healthy) device list once and keeps the stream open.
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		ids := strings.Join(c.DevicesIds, ",")
		log.Printf("allocate %s", ids)
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": ids, "FINETUNE_FAKE_GPU_IDS": ids},
		})
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

// serve listens on socket and serves the plugin until stopped.
func serve(p *plugin, socket string) (*grpc.Server, error) {
	_ = os.Remove(socket)
	lis, err := net.Listen("unix", socket)
	if err != nil {
		return nil, err
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, p)
	go func() { _ = server.Serve(lis) }()
	return server, nil
}

func register(dir, name, resource string) error {
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version: pluginapi.Version, Endpoint: name + ".sock", ResourceName: resource,
	})
	return err
}

func main() {
	dir := flag.String("dir", pluginapi.DevicePluginPath, "the kubelet's device-plugin directory")
	resource := flag.String("resource", "nvidia.com/gpu", "extended resource name to advertise")
	count := flag.Int("count", 1, "number of devices")
	name := flag.String("name", "finetune-fake-gpu", "socket name (without .sock) and device ID prefix")
	flag.Parse()

	p := &plugin{}
	for i := 0; i < *count; i++ {
		p.devices = append(p.devices, &pluginapi.Device{ID: fmt.Sprintf("%s-%d", *name, i), Health: pluginapi.Healthy})
	}
	socket := filepath.Join(*dir, *name+".sock")
	var server *grpc.Server
	for ; ; time.Sleep(time.Second) {
		if _, err := os.Stat(socket); err == nil && server != nil {
			continue // serving and registered
		}
		if server != nil { // the kubelet restarted and removed our socket
			server.Stop()
			server = nil
		}
		if _, err := os.Stat(filepath.Join(*dir, "kubelet.sock")); err != nil {
			continue // the kubelet is not up yet
		}
		s, err := serve(p, socket)
		if err != nil {
			log.Printf("serve %s: %v (retrying)", socket, err)
			continue
		}
		if err := register(*dir, *name, *resource); err != nil {
			log.Printf("register with the kubelet: %v (retrying)", err)
			s.Stop()
			_ = os.Remove(socket)
			continue
		}
		server = s
		log.Printf("registered %d x %s (%s)", *count, *resource, socket)
	}
}
