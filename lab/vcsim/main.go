// Command dsfleet-vcsim serves a vCenter simulator (govmomi's simulator package, as Debian ships it)
// populated from a JSON fleet spec written by the Python lab. It speaks the real vSphere SOAP API over
// HTTPS with the lab CA's certificate, so the suite talks to it through pyvmomi exactly as to a vCenter.
//
// Build (offline, from Debian's golang-github-vmware-govmomi-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o dsfleet-vcsim ./lab/vcsim
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

type vmSpec struct {
	Name          string `json:"name"`
	UUID          string `json:"uuid"`
	InstanceUUID  string `json:"instance_uuid"` // config.instanceUuid (NSX-T's external id of the VM)
	GuestID       string `json:"guest_id"`
	GuestFamily   string `json:"guest_family"`
	Power         string `json:"power"`          // poweredOn | poweredOff | suspended
	ToolsRunning  string `json:"tools_running"`  // guestToolsRunning | guestToolsNotRunning
	ToolsVersion  string `json:"tools_version"`  // guestToolsCurrent | guestToolsNotInstalled | ...
	GuestHostName string `json:"guest_hostname"` // reported by VMware Tools
	IP            string `json:"ip"`             // guest.ipAddress, reported by VMware Tools while it runs
}

type hostSpec struct {
	Name string   `json:"name"`
	VMs  []vmSpec `json:"vms"`
}

type clusterSpec struct {
	Name  string     `json:"name"`
	Hosts []hostSpec `json:"hosts"`
}

type fleetSpec struct {
	Listen    string        `json:"listen"` // host:port on loopback
	User      string        `json:"user"`
	Cert      string        `json:"cert"` // PEM chain + key for the HTTPS listener
	Key       string        `json:"key"`
	DelayMS   int           `json:"delay_ms"` // per SOAP call, applied after the inventory is built
	Clusters  []clusterSpec `json:"clusters"`
	ReadyFile string        `json:"ready_file"`
	// One line per request: the SOAP operation (the first element inside soap:Body), or
	// "<METHOD> <path>" for anything that is not SOAP, so tests can prove the suite only reads.
	RequestLog string `json:"request_log"`
	// Written before the ready file: {"<VM name>": "<moref>"}, what NSX-V reports a VM by (lab/nsx_server.py).
	MorefFile string `json:"moref_file"`
}

func must(err error, what string) {
	if err != nil {
		log.Fatalf("dsfleet-vcsim: %s: %v", what, err)
	}
}

func main() {
	specPath := flag.String("spec", "", "fleet spec JSON")
	flag.Parse()
	raw, err := os.ReadFile(*specPath)
	must(err, "read spec")
	var spec fleetSpec
	must(json.Unmarshal(raw, &spec), "parse spec")
	// The password never sits in the spec file: the lab passes it through the environment.
	password := os.Getenv("DSFLEET_VCSIM_PASSWORD")
	if spec.User == "" || password == "" {
		log.Fatal("dsfleet-vcsim: spec.user and DSFLEET_VCSIM_PASSWORD are required")
	}

	model := simulator.VPX()
	model.Datacenter = 1
	model.Cluster = 0
	model.ClusterHost = 0
	model.Host = 0
	model.Machine = 0
	model.Portgroup = 0
	model.Datastore = 0
	must(model.Create(), "create model")
	defer model.Remove()

	ctx := context.Background()
	c, err := vim25.NewClient(ctx, model.Service)
	must(err, "in-process client")
	// VM files live here while the simulator runs; removed on SIGTERM/SIGINT.
	scratch, err := os.MkdirTemp("", "dsfleet-vcsim-")
	must(err, "scratch dir")
	defer os.RemoveAll(scratch)
	build(ctx, c, spec, scratch)

	cert, err := tls.LoadX509KeyPair(spec.Cert, spec.Key)
	must(err, "load certificate")
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	model.Service.Listen = &url.URL{Host: spec.Listen, User: url.UserPassword(spec.User, password)}
	server := model.Service.NewServer()
	defer server.Close()
	if spec.RequestLog != "" {
		// Set before the ready file is written, so no request can arrive before the wrapper is in place.
		server.Config.Handler = logRequests(server.Config.Handler, spec.RequestLog)
	}
	// Latency is injected only once the inventory exists: it models the network, not the build.
	model.DelayConfig.Delay = spec.DelayMS

	u := *server.URL
	u.User = nil
	if spec.ReadyFile != "" {
		must(os.WriteFile(spec.ReadyFile+".tmp", []byte(u.String()+"\n"), 0o644), "write ready file")
		must(os.Rename(spec.ReadyFile+".tmp", spec.ReadyFile), "publish ready file")
	}
	fmt.Println(u.String())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

func build(ctx context.Context, c *vim25.Client, spec fleetSpec, scratch string) {
	root := object.NewRootFolder(c)
	children, err := root.Children(ctx)
	must(err, "list datacenters")
	var dc *object.Datacenter
	for _, ch := range children {
		if d, ok := ch.(*object.Datacenter); ok {
			dc = d
		}
	}
	if dc == nil {
		log.Fatal("dsfleet-vcsim: no datacenter in the base model")
	}
	folders, err := dc.Folders(ctx)
	must(err, "datacenter folders")
	morefs := map[string]string{}
	for _, cl := range spec.Clusters {
		cluster, err := folders.HostFolder.CreateCluster(ctx, cl.Name, types.ClusterConfigSpecEx{})
		must(err, "create cluster "+cl.Name)
		for _, h := range cl.Hosts {
			task, err := cluster.AddHost(ctx, types.HostConnectSpec{HostName: h.Name, Force: true}, true, nil, nil)
			must(err, "add host "+h.Name)
			info, err := task.WaitForResult(ctx, nil)
			must(err, "add host task "+h.Name)
			host := object.NewHostSystem(c, info.Result.(types.ManagedObjectReference))
			pool, err := host.ResourcePool(ctx)
			must(err, "resource pool of "+h.Name)
			// Each host gets its own local datastore, as a real ESXi host's local disk.
			ds := localDatastore(ctx, host, scratch, h.Name)
			for _, v := range h.VMs {
				morefs[v.Name] = createVM(ctx, c, folders.VmFolder, pool, host, ds, v)
			}
		}
	}
	if spec.MorefFile != "" {
		data, err := json.Marshal(morefs)
		must(err, "encode morefs")
		must(os.WriteFile(spec.MorefFile, data, 0o644), "write moref file")
	}
}

func localDatastore(ctx context.Context, host *object.HostSystem, scratch, hostName string) string {
	dir := scratch + "/" + hostName
	must(os.MkdirAll(dir, 0o755), "datastore dir")
	dss, err := host.ConfigManager().DatastoreSystem(ctx)
	must(err, "datastore system of "+hostName)
	name := "ds-" + hostName
	_, err = dss.CreateLocalDatastore(ctx, name, dir)
	must(err, "create datastore "+name)
	return name
}

func createVM(ctx context.Context, c *vim25.Client, folder *object.Folder, pool *object.ResourcePool,
	host *object.HostSystem, ds string, v vmSpec) string {
	cfg := types.VirtualMachineConfigSpec{
		Name:         v.Name,
		GuestId:      v.GuestID,
		Uuid:         v.UUID,
		InstanceUuid: v.InstanceUUID,
		Files:        &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", ds)},
	}
	task, err := folder.CreateVM(ctx, cfg, pool, host)
	must(err, "create vm "+v.Name)
	info, err := task.WaitForResult(ctx, nil)
	must(err, "create vm task "+v.Name)
	ref := info.Result.(types.ManagedObjectReference)
	vm := object.NewVirtualMachine(c, ref)
	switch v.Power {
	case "poweredOn", "suspended":
		t, err := vm.PowerOn(ctx)
		must(err, "power on "+v.Name)
		must(t.Wait(ctx), "power on task "+v.Name)
		if v.Power == "suspended" {
			t, err = vm.Suspend(ctx)
			must(err, "suspend "+v.Name)
			must(t.Wait(ctx), "suspend task "+v.Name)
		}
	case "poweredOff", "":
	default:
		log.Fatalf("dsfleet-vcsim: vm %s: unknown power state %q", v.Name, v.Power)
	}
	// Guest facts are what VMware Tools reports; the simulator keeps them as plain fields, which we set
	// directly (power operations do not touch them). summary.guest is a separate copy in vSphere.
	obj := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	obj.Guest.ToolsRunningStatus = v.ToolsRunning
	obj.Guest.ToolsVersionStatus2 = v.ToolsVersion
	obj.Guest.GuestFamily = v.GuestFamily
	obj.Guest.GuestId = v.GuestID
	obj.Guest.HostName = v.GuestHostName
	if v.ToolsRunning == "guestToolsRunning" {
		obj.Guest.GuestState = "running"
		obj.Guest.ToolsStatus = types.VirtualMachineToolsStatusToolsOk
	} else {
		obj.Guest.GuestState = "notRunning"
		obj.Guest.ToolsStatus = types.VirtualMachineToolsStatusToolsNotRunning
	}
	if obj.Summary.Guest == nil {
		obj.Summary.Guest = &types.VirtualMachineGuestSummary{}
	}
	obj.Summary.Guest.ToolsRunningStatus = v.ToolsRunning
	obj.Summary.Guest.ToolsVersionStatus2 = v.ToolsVersion
	obj.Summary.Guest.HostName = v.GuestHostName
	obj.Summary.Guest.ToolsStatus = obj.Guest.ToolsStatus
	if v.ToolsRunning == "guestToolsRunning" && v.Power == "poweredOn" {
		obj.Guest.IpAddress = v.IP
		obj.Summary.Guest.IpAddress = v.IP
	}
	return ref.Value
}

// logRequests wraps the simulator's handler: it appends each request's operation to path, then serves it.
func logRequests(next http.Handler, path string) http.Handler {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(err, "open request log")
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "cannot read the request", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		line := soapOperation(body)
		if line == "" {
			line = r.Method + " " + r.URL.Path
		}
		mu.Lock()
		fmt.Fprintln(f, line)
		mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// soapOperation is the local name of the first element inside the SOAP Body, or "" when there is none.
func soapOperation(body []byte) string {
	dec := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if start, ok := tok.(xml.StartElement); ok {
			if inBody {
				return start.Name.Local
			}
			inBody = start.Name.Local == "Body"
		}
	}
}
