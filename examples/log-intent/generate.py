#!/usr/bin/env python3
"""Synthetic 5-class network log-intent dataset: link-state, dhcp, auth, routing, anomaly.

Every line is a syslog line in the syntax of one of five sources — Cisco IOS, Cisco NX-OS,
Juniper Junos, Arista EOS and Linux daemons (dhcpd, dnsmasq, dhclient, systemd-networkd,
sshd, sudo, bird, FRR, the kernel) — with random interface names, addresses, MACs,
hostnames, timestamps, PIDs, users and wording alternatives.

Generalization is the point, not our own score, so the evaluation split is built from
message templates (and so message phrases) that the training split never uses, and from a
different mix of vendors (training leans on IOS and Linux, evaluation on Junos, NX-OS and
EOS). A model that merely memorised the training templates does not pass the eval split.

Labels (one per line):
  link-state  physical/data-link status of an interface or bundle member: up/down, carrier,
              line protocol, speed, admin state, LACP membership
  dhcp        address assignment over DHCP: discover/offer/request/ack/nak, leases, pools,
              relay and snooping
  auth        logins and authentication/authorization: SSH, console, AAA, RADIUS/TACACS+,
              sudo, lockouts
  routing     routing-protocol sessions and routes: BGP, OSPF, IS-IS, EIGRP, LDP, prefix limits
  anomaly     abnormal conditions: CPU hogs, memory exhaustion, crashes, hardware/environment
              faults, storms, floods, MAC flaps, duplicate addresses

Deterministic for a given seed. `python generate.py` rewrites train.jsonl and eval.jsonl
next to this file (the committed copies were written with the defaults).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

LABELS = ("link-state", "dhcp", "auth", "routing", "anomaly")
VENDORS = ("ios", "nxos", "junos", "eos", "linux")
SPLITS = ("train", "eval")
DEFAULT_SEED = 20240603
DEFAULT_TRAIN = 1000
DEFAULT_EVAL = 300

# Training leans on IOS and Linux, evaluation on the others: a different vendor mix per split.
VENDOR_WEIGHTS = {
    "train": {"ios": 3.5, "linux": 3.0, "nxos": 1.5, "junos": 1.5, "eos": 1.0},
    "eval": {"ios": 1.5, "linux": 2.0, "nxos": 2.0, "junos": 2.5, "eos": 2.0},
}


@dataclass(frozen=True)
class Template:
    id: str
    label: str
    vendor: str
    split: str
    program: str | None  # syslog tag (process) for Junos/EOS/Linux; None for IOS/NX-OS
    body: str  # message with {slot}s and [[alternative|alternative]]s


_SEEN_IDS: dict[str, int] = {}


def _t(label: str, vendor: str, split: str, program: str | None, *bodies: str) -> list[Template]:
    out = []
    for body in bodies:
        key = f"{label}/{vendor}/{split}/{program or '-'}"
        i = _SEEN_IDS[key] = _SEEN_IDS.get(key, -1) + 1
        out.append(Template(f"{key}/{i}", label, vendor, split, program, body))
    return out


TEMPLATES: list[Template] = [
    # ------------------------------------------------------------------ link-state
    *_t("link-state", "ios", "train", None,
        "%LINK-3-UPDOWN: Interface {ios_if}, changed state to [[down|up]]",
        "%LINK-5-CHANGED: Interface {ios_if}, changed state to administratively down",
        "%EC-5-[[UNBUNDLE|BUNDLE]]: Interface {ios_if_short} [[left the|joined]] port-channel Port-channel{small}"),
    *_t("link-state", "ios", "eval", None,
        "%LINEPROTO-5-UPDOWN: Line protocol on Interface {ios_if}, changed state to [[down|up]]",
        "%PM-4-ERR_DISABLE: link-flap error detected on {ios_if_short}, putting {ios_if_short} in err-disable state"),
    *_t("link-state", "nxos", "train", None,
        "%ETHPORT-5-IF_DOWN_LINK_FAILURE: Interface {nx_if} is down (Link failure)",
        "%ETHPORT-5-IF_UP: Interface {nx_if} is up in mode [[access|trunk|routed]]",
        "%ETHPORT-5-SPEED: Interface {nx_if}, operational speed changed to [[1 Gbps|10 Gbps|25 Gbps|100 Gbps]]"),
    *_t("link-state", "nxos", "eval", None,
        "%ETHPORT-5-IF_DOWN_ADMIN_DOWN: Interface {nx_if} is down (Administratively down)",
        "%ETH_PORT_CHANNEL-5-PORT_[[DOWN|UP]]: port-channel{small}: {nx_if} is [[down|up]]"),
    *_t("link-state", "junos", "train", "mib2d",
        "SNMP_TRAP_LINK_[[DOWN|UP]]: ifIndex {ifindex}, ifAdminStatus up(1), ifOperStatus [[down(2)|up(1)]], ifName {jn_if}"),
    *_t("link-state", "junos", "train", "kernel",
        "{jn_phys}: link [[down|up]], [[ifd flags 0x8000|media type copper|media type fiber]]"),
    *_t("link-state", "junos", "eval", "lacpd",
        "LACPD_TIMEOUT: {jn_phys}: lacp current while timer expired current Receive State: CURRENT"),
    *_t("link-state", "junos", "eval", "dcd",
        "DCD_LINK_STATUS: interface {jn_phys} carrier [[lost|detected]] ([[loss of signal|remote fault|autonegotiation complete]])"),
    *_t("link-state", "eos", "train", "Ebra",
        "%LINK-3-UPDOWN: Interface {eos_if}, changed state to [[down|up]]"),
    *_t("link-state", "eos", "train", "Lag",
        "%LAG-6-MEMBER_[[REMOVED|ADDED]]: Interface {eos_if} [[removed from|added to]] Port-Channel{small}"),
    *_t("link-state", "eos", "eval", "Ebra",
        "%LINEPROTO-5-UPDOWN: Line protocol on Interface {eos_if}, changed state to [[down|up]]",
        "%ETH-6-AUTONEG: Interface {eos_if} autonegotiated to [[1 Gbps|10 Gbps|25 Gbps]] full duplex"),
    *_t("link-state", "linux", "train", "kernel",
        "{nic_drv} {pci} {lnx_if}: NIC Link is [[Down|Up 1000 Mbps Full Duplex, Flow Control: None|Up 10 Gbps Full Duplex, Flow Control: RX/TX]]",
        "{bond}: link status definitely [[down for interface {lnx_if}, disabling it|up for interface {lnx_if}, 10000 Mbps full duplex]]"),
    *_t("link-state", "linux", "train", "systemd-networkd",
        "{lnx_if}: [[Lost|Gained]] carrier"),
    *_t("link-state", "linux", "eval", "kernel",
        "IPv6: ADDRCONF(NETDEV_CHANGE): {lnx_if}: link becomes ready",
        "mlx5_core {pci} {lnx_if}: Link [[down|up]]"),
    *_t("link-state", "linux", "eval", "NetworkManager",
        "<info>  [{epoch}] device ({lnx_if}): state change: [[activated -> unavailable|unavailable -> disconnected]] (reason 'carrier-changed', sys-iface-state: 'managed')"),
    # ------------------------------------------------------------------ dhcp
    *_t("dhcp", "ios", "train", None,
        "%DHCPD-4-PING_CONFLICT: DHCP address conflict:  server pinged {ip}.",
        "%DHCP-6-ADDRESS_ASSIGN: Interface {ios_if} assigned DHCP address {ip}, mask {mask}, hostname {host}",
        "%DHCPD-4-DECLINE_CONFLICT: DHCP address conflict:  client {mac_dot} declined {ip}."),
    *_t("dhcp", "ios", "eval", None,
        "%DHCP_SNOOPING-5-DHCP_SNOOPING_UNTRUSTED_PORT: DHCP_SNOOPING drop message on untrusted port, message type: [[DHCPOFFER|DHCPACK]], MAC sa: {mac_dot}",
        "%DHCPD-3-NO_FREE_ADDR: pool {pool} has no free addresses left for client {mac_dot}"),
    *_t("dhcp", "nxos", "train", None,
        "%DHCP_SNOOP-4-DHCP_SNOOPING_DROP: dhcp packet dropped on {nx_if} vlan {vlan}: no binding for client {mac_dot}",
        "%DHCP_RELAY-6-RELAY: Relayed [[DHCPDISCOVER|DHCPREQUEST]] from {mac_dot} on Vlan{vlan} to server {ip}"),
    *_t("dhcp", "nxos", "eval", None,
        "%DHCP_SNOOP-5-BINDING_[[ADDED|REMOVED]]: Binding [[added|removed]] for client {mac_dot} address {ip} lease {lease}s on Vlan{vlan} {nx_if}",
        "%DHCP_SMART_RELAY-4-GIADDR_MISSING: no secondary giaddr on Vlan{vlan}, falling back to primary {ip} for offers"),
    *_t("dhcp", "junos", "train", "jdhcpd",
        "JDHCPD_BIND: Client {mac} bound to {ip} on {jn_if} lease {lease} seconds",
        "%USER-3-DHCPD_POOL_EXHAUSTED: address pool {pool} exhausted, dropping DISCOVER from {mac}"),
    *_t("dhcp", "junos", "eval", "jdhcpd",
        "JDHCPD_RELEASE: Client {mac} released address {ip} on {jn_if}",
        "DH_SVC_SENDMSG_FAILURE: sendmsg() failed sending [[OFFER|ACK]] to client {mac}: No route to host"),
    *_t("dhcp", "eos", "train", "DhcpRelay",
        "%DHCP_RELAY-6-FORWARD: Forwarded [[DHCPDISCOVER|DHCPREQUEST]] from {mac} on Vlan{vlan} to server {ip}"),
    *_t("dhcp", "eos", "train", "Dhcp",
        "%DHCP-6-LEASE_OBTAINED: Interface Management1 acquired address {ip}/{plen} from server {ip2}"),
    *_t("dhcp", "eos", "eval", "DhcpSnooping",
        "%DHCP_SNOOPING-4-INVALID_PKT: [[DHCPOFFER|DHCPACK]] received on untrusted interface {eos_if} in VLAN {vlan} dropped"),
    *_t("dhcp", "eos", "eval", "DhcpServer",
        "%DHCP_SERVER-4-LEASE_RENEWED: lease for {ip} renewed by {mac} ([[{client}|no hostname]]) for {lease} seconds"),
    *_t("dhcp", "linux", "train", "dhcpd",
        "DHCPDISCOVER from {mac} via {lnx_if}",
        "DHCPREQUEST for {ip} ({ip2}) from {mac} ({client}) via {lnx_if}",
        "DHCPACK on {ip} to {mac} ({client}) via {lnx_if}"),
    *_t("dhcp", "linux", "train", "dhclient",
        "bound to {ip} -- renewal in {secs} seconds."),
    *_t("dhcp", "linux", "eval", "dnsmasq-dhcp",
        "DHCPOFFER({lnx_if}) {ip} {mac}",
        "DHCPNAK({lnx_if}) {ip} {mac} wrong address"),
    *_t("dhcp", "linux", "eval", "systemd-networkd",
        "{lnx_if}: DHCPv4 address {ip}/{plen}, gateway {ip2} acquired from {ip3}"),
    # ------------------------------------------------------------------ auth
    *_t("auth", "ios", "train", None,
        "%SEC_LOGIN-4-LOGIN_FAILED: Login failed [user: {user}] [Source: {ip}] [localport: [[22|23]]] [Reason: Login Authentication Failed] at {hms} UTC {dow} {mon} {day} {year}",
        "%SEC_LOGIN-5-LOGIN_SUCCESS: Login Success [user: {user}] [Source: {ip}] [localport: 22] at {hms} UTC {dow} {mon} {day} {year}",
        "%RADIUS-4-RADIUS_DEAD: RADIUS server {ip}:1812,1813 is not responding."),
    *_t("auth", "ios", "eval", None,
        "%SSH-5-SSH2_USERAUTH: User '{user}' authentication for SSH2 Session from {ip} (tty = {small}) using crypto cipher '[[aes256-ctr|aes128-gcm@openssh.com]]', hmac '[[hmac-sha2-256|hmac-sha1]]' [[Failed|Succeeded]]",
        "%TACACS-3-TIMEOUT: TACACS+ server {ip} timed out while authenticating user {user}"),
    *_t("auth", "nxos", "train", None,
        "%AUTHPRIV-3-SYSTEM_MSG: pam_aaa:Authentication failed for user {user} from {ip} - sshd[{pid}]",
        "%AUTHPRIV-6-SYSTEM_MSG: pam_unix(dcos_sshd:session): session opened for user {user} by (uid=0) - dcos_sshd[{pid}]"),
    *_t("auth", "nxos", "eval", None,
        "%DAEMON-3-SYSTEM_MSG: error: maximum authentication attempts exceeded for invalid user {user} from {ip} port {port} ssh2 [preauth] - dcos_sshd[{pid}]",
        "%TACACS-3-TACACS_ERROR_MESSAGE: All servers failed to respond"),
    *_t("auth", "junos", "train", "sshd",
        "SSHD_LOGIN_FAILED: Login failed for user '{user}' from host '{ip}'"),
    *_t("auth", "junos", "train", "mgd",
        "UI_LOGIN_EVENT: User '{user}' login, class '[[j-super-user|j-operator|j-read-only]]' [{pid}], ssh-connection '{ip} {port} {ip2} 22', client-mode 'cli'"),
    *_t("auth", "junos", "eval", "login",
        "LOGIN_ATTEMPTS_THRESHOLD: Threshold for unsuccessful authentication attempts ({small}) reached by user '{user}'"),
    *_t("auth", "junos", "eval", "mgd",
        "UI_AUTH_EVENT: Authenticated user '{user}' at permission level '[[j-super-user|j-operator]]'"),
    *_t("auth", "eos", "train", "Aaa",
        "%AAA-4-EXEC_AUTHZ_FAILED: User {user} failed authorization to start a shell",
        "%AAA-5-LOGIN_FAILED: login failed for user {user} on ssh from {ip} ([[bad password|unknown user]])"),
    *_t("auth", "eos", "eval", "Aaa",
        "%AAA-4-NO_AAA_SERVER: no reachable [[TACACS+|RADIUS]] server group, falling back to local authentication for user {user}",
        "%AAA-6-ENABLE: user {user} entered privileged mode from {ip}"),
    *_t("auth", "linux", "train", "sshd",
        "Failed password for [[invalid user |]]{user} from {ip} port {port} ssh2",
        "Accepted [[publickey|password]] for {user} from {ip} port {port} ssh2[[: RSA SHA256:{fp}|: ED25519 SHA256:{fp}|]]",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={user}"),
    *_t("auth", "linux", "train", "sudo",
        "pam_unix(sudo:auth): conversation failed; auth could not identify password for [{user}]"),
    *_t("auth", "linux", "train", "sshd",
        "pam_tacplus: tac_connect: connection to TACACS+ server {ip}:49 failed, authentication of {user} unavailable"),
    *_t("auth", "linux", "train", "sudo",
        "pam_unix(sudo:auth): authentication failure; logname={user} uid={uid} euid=0 tty=/dev/pts/{small} ruser={user} rhost=  user={user}"),
    *_t("auth", "linux", "eval", "sshd",
        "Invalid user {user} from {ip} port {port}",
        "Disconnected from authenticating user {user} {ip} port {port} [preauth]"),
    *_t("auth", "linux", "eval", "sudo",
        "{user} : [[3 incorrect password attempts|user NOT in sudoers]] ; TTY=pts/{small} ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/[[systemctl|vtysh|ip]]"),
    *_t("auth", "linux", "eval", "login",
        "FAILED LOGIN 1 FROM tty{small} FOR {user}, Authentication failure"),
    # ------------------------------------------------------------------ routing
    *_t("routing", "ios", "train", None,
        "%BGP-5-ADJCHANGE: neighbor {ip} [[Up|Down BGP Notification sent|Down Peer closed the session|Down Interface flap]]",
        "%OSPF-5-ADJCHG: Process {small}, Nbr {ip} on {ios_if} from [[LOADING to FULL, Loading Done|FULL to DOWN, Neighbor Down: Dead timer expired|EXSTART to EXCHANGE, Negotiation Done]]",
        "%BGP-3-NOTIFICATION: [[sent to|received from]] neighbor {ip} 4/0 (hold time expired) 0 bytes"),
    *_t("routing", "ios", "train", None,
        "%ISIS-4-NBR_TIMEOUT: IS-IS L[[1|2]] neighbor {host} on {ios_if_short} timed out, removing its routes"),
    *_t("routing", "ios", "eval", None,
        "%DUAL-5-NBRCHANGE: EIGRP-IPv4 {small}: Neighbor {ip} ({ios_if}) is [[up: new adjacency|down: holding time expired|down: Interface PEER-TERMINATION received]]",
        "%BGP-4-MAXPFX: No. of prefix received from {ip} (afi 0) reaches {count}, max {count2}",
        "%CLNS-5-ADJCHANGE: ISIS: Adjacency to {host} ({ios_if}) [[Up, new adjacency|Down, hold time expired]]"),
    *_t("routing", "nxos", "train", None,
        "%BGP-5-ADJCHANGE:  bgp-{asn} [{pid}] (default) neighbor {ip} [[Up|Down - holdtimer expired error|Down - sent: cease]]",
        "%OSPF-5-NBRSTATE: ospf-{small} [{pid}] Process {small} Nbr {ip} on {nx_if} from [[LOADING to FULL|FULL to DOWN]]"),
    *_t("routing", "nxos", "eval", None,
        "%OSPF-5-ADJCHANGE: ospf-{small} [{pid}] Nbr {ip} on Vlan{vlan} went [[DOWN|FULL]]",
        "%ISIS-5-ADJCHANGE: isis-{small} [{pid}] LAN adj L2 {host} over {nx_if} - [[UP|DOWN (Hold timer expired)]] T -1 on MT-0"),
    *_t("routing", "junos", "train", "rpd",
        "RPD_BGP_NEIGHBOR_STATE_CHANGED: BGP peer {ip} (External AS {asn}) changed state from [[OpenConfirm to Established (event RecvKeepAlive)|Established to Idle (event RecvNotify)|Established to Idle (event HoldTime)]]",
        "RPD_OSPF_NBRDOWN: OSPF neighbor {ip} (realm ospf-v2 {jn_if} area 0.0.0.{small}) state changed from Full to Down due to [[InActiveTimer|KillNbr]]"),
    *_t("routing", "junos", "eval", "rpd",
        "RPD_ISIS_ADJDOWN: IS-IS lost L2 adjacency to {host} on {jn_if}, reason: [[Aged Out|3-Way Handshake Failed|BFD Session Down]]",
        "RPD_LDP_NBRDOWN: LDP neighbor {ip} ({jn_if}) is down",
        "bgp_hold_timeout: NOTIFICATION sent to {ip} (External AS {asn}): code 4 (Hold Timer Expired Error), Reason: holdtime expired for {ip}"),
    *_t("routing", "eos", "train", "Bgp",
        "%BGP-5-ADJCHANGE: peer {ip} (VRF [[default|MGMT|prod]] AS {asn}) old state [[OpenConfirm event RecvKeepAlive new state Established|Established event HoldTimerExpired new state Idle]]"),
    *_t("routing", "eos", "train", "Ospf",
        "%OSPF-4-OSPF_ADJACENCY_TEARDOWN: NGB {ip}, interface {ip2} adjacency dropped: [[nbr did not list our router ID|inactivity timer expired|interface went down]], state was: FULL"),
    *_t("routing", "eos", "eval", "Bgp",
        "%BGP-4-PEER_MAXPFX: peer {ip} (VRF default AS {asn}) received {count} prefixes, over the maximum-routes limit {count2}"),
    *_t("routing", "eos", "eval", "Isis",
        "%ISIS-5-ADJACENCY_CHANGE: Adjacency with {host} on {eos_if} level-2 changed state [[UP -> DOWN|INIT -> UP]]"),
    *_t("routing", "linux", "train", "bird",
        "{bird_bgp}: State changed to [[up|down|start]]",
        "{bird_ospf}: Neighbor {ip} on {lnx_if} changed state from [[Loading to Full|Full to Down|ExStart to Exchange]]"),
    *_t("routing", "linux", "train", "bgpd",
        "%ADJCHANGE: neighbor {ip}(Unknown) in vrf default [[Up|Down Peer closed the session|Down BGP Notification send]]"),
    *_t("routing", "linux", "train", "isisd",
        "[ISIS] area {small}: neighbor {host} via {lnx_if} [[lost: no hellos received|established: three-way handshake complete]]"),
    *_t("routing", "linux", "eval", "ospfd",
        "AdjChg: Nbr {ip}(default) on {lnx_if}:{ip2}: [[Full -> Deleted (InactivityTimer)|Loading -> Full (LoadingDone)]]"),
    *_t("routing", "linux", "eval", "bird",
        "{bird_bgp}: Received: [[Hold timer expired|Administrative shutdown|Connection rejected]]"),
    # ------------------------------------------------------------------ anomaly
    *_t("anomaly", "ios", "train", None,
        "%SYS-3-CPUHOG: Task is running for ({count})msecs, more than (2000)msecs ({small}/{small}),process = [[IP Input|ARP Input|BGP Router|SNMP ENGINE]].",
        "%SYS-2-MALLOCFAIL: Memory allocation of {count} bytes failed from {hex}, alignment 0 Pool: Processor  Free: {count2}  Cause: Not enough free memory",
        "%SW_MATM-4-MACFLAP_NOTIF: Host {mac_dot} in vlan {vlan} is flapping between port {ios_if_short} and port {ios_if_short2}",
        "%STORM_CONTROL-3-FILTERED: A packet storm was detected on {ios_if_short}. A packet filter action has been applied on the interface."),
    *_t("anomaly", "ios", "eval", None,
        "%IP-4-DUPADDR: Duplicate address {ip} on {ios_if}, sourced by {mac_dot}",
        "%PLATFORM-3-ELEMENT_CRITICAL: R0/0: smand: 1/RP/0: Used Memory value {pct}% exceeds critical level 93%"),
    *_t("anomaly", "nxos", "train", None,
        '%SYSMGR-2-SERVICE_CRASHED: Service "[[bgp|ospf|snmpd|aclmgr]]" (PID {pid}) hasn\'t caught signal 11 (core will be saved).',
        "%PLATFORM-2-FAN_REMOVED: Fan module {small} ({serial}) removed"),
    *_t("anomaly", "nxos", "train", None,
        "%COPP-2-COPP_DROPS1: CoPP drops exceed threshold in class: [[copp-system-p-class-critical|copp-system-p-class-normal|class-default]], check show policy-map interface control-plane"),
    *_t("anomaly", "nxos", "eval", None,
        "%L2FM-2-L2FM_MAC_FLAP_DISABLE_LEARN_N3K: Loops detected in the network for mac {mac_dot} among ports {nx_if} and {nx_if2} vlan {vlan} - Disabling dynamic learning notifications for a period between 120 and 240 seconds on vlan {vlan}",
        "%KERN-2-SYSTEM_MSG: [{uptime}] Out of memory: Kill process {pid} ([[netstack|l2fm|bgp]]) score {small} or sacrifice child - kernel",
        "%PLATFORM-2-PS_FAIL: Power supply {small} failed or shut down (Serial number {serial})"),
    *_t("anomaly", "junos", "train", "chassisd",
        "CHASSISD_FRU_HIGH_TEMP_CONDITION: [[FPC|PEM|Routing Engine]] {small} over high temperature, temp {temp}C"),
    *_t("anomaly", "junos", "train", "kernel",
        "%KERN-3: RT_PFE: NH IPC op {small} (ADD NEXTHOP) failed, err 6 (No Memory) peer_class 0, peer_index 0 peer_type 10"),
    *_t("anomaly", "junos", "eval", "chassisd",
        "CHASSISD_FAN_FAILED: [[Fan Tray|Fan]] {small} [[failed|not spinning]]"),
    *_t("anomaly", "junos", "eval", "kernel",
        "Process ({pid},[[rpd|mgd|snmpd]]) has exceeded 85% of RLIMIT_DATA: used {count} KB Max {count2} KB"),
    *_t("anomaly", "junos", "eval", "jddosd",
        "DDOS_PROTOCOL_VIOLATION_SET: Warning: Host-bound traffic for protocol/exception [[ARP:aggregate|ICMP:aggregate|BGP:aggregate]] exceeded its allowed bandwidth at fpc {small} for {count} times"),
    *_t("anomaly", "eos", "train", "PowerManager",
        "%ENVMON-4-POWER_SUPPLY_FAILED: Power supply {small} has failed"),
    *_t("anomaly", "eos", "train", "ProcMgr",
        "%PROCMGR-4-PROCESS_TERMINATED: '[[Stp|Lldp|Rib]]' (PID={pid}) has exited with signal [[6|11]]"),
    *_t("anomaly", "eos", "eval", "Sand",
        "%HARDWARE-3-PARITY_ERROR: Uncorrectable parity error detected in [[Jericho0|FE1600]] [[ingress buffer|TCAM bank 3]]"),
    *_t("anomaly", "eos", "eval", "StormControl",
        "%STORMCONTROL-4-DISCARDING: Interface {eos_if} [[broadcast|multicast]] traffic exceeded {pct}% threshold, discarding"),
    *_t("anomaly", "linux", "train", "kernel",
        "watchdog: BUG: soft lockup - CPU#{small} stuck for {small}s! [{proc}:{pid}]",
        "nf_conntrack: nf_conntrack: table full, dropping packet",
        "TCP: request_sock_TCP: Possible SYN flooding on port {port}. Sending cookies.  Check SNMP counters.",
        "{proc}[{pid}]: segfault at {hex} ip {hex2} sp {hex3} error [[4|6]] in libc.so.6"),
    *_t("anomaly", "linux", "train", "kernel",
        "IPv6: {lnx_if}: IPv6 duplicate address fe80::{small}a:{small}ff:fe{small}b:{small}c used by {mac} detected!",
        "br0: received packet on {lnx_if} with own address as source address (addr:{mac}, vlan:{vlan})"),
    *_t("anomaly", "linux", "eval", "kernel",
        "Out of memory: Killed process {pid} ({proc}) total-vm:{count}kB, anon-rss:{count2}kB, file-rss:0kB, shmem-rss:0kB",
        "mce: [Hardware Error]: Machine check events logged",
        "neighbour: arp_cache: neighbor table overflow!",
        "{nic_drv} {pci} {lnx_if}: Detected Hardware Unit Hang"),
    # --------------------------------------------------- broader training coverage
    # The first training split taught several kinds of event with one vendor's wording only (a
    # packet storm only as IOS, a TACACS+ outage only as a Linux PAM line, ...), so a classifier
    # could not learn the kind of event apart from the syntax. These add the same kinds in other
    # vendors' syntax, phrased as those systems phrase them and never as an eval template does.
    *_t("link-state", "ios", "train", None,
        "%PM-4-ERR_RECOVER: Attempting to recover from link-flap err-disable state on {ios_if_short}",
        "%LINEPROTO-5-PPP: Line protocol on Serial0/{small}/0 [[went down, keepalive missed|came up, LCP open]]"),
    *_t("link-state", "nxos", "train", None,
        "%ETH_PORT_CHANNEL-5-PORT_SUSPENDED: {nx_if}: {nx_if} is suspended (LACP PDUs not received)",
        "%ETHPORT-5-IF_ADMIN_UP: Interface {nx_if} is admin up"),
    *_t("link-state", "junos", "train", "lacpd",
        "LACP_INTF_DOWN: ae{small}: Interface marked down due to lacp timeout on member {jn_phys}"),
    *_t("link-state", "eos", "train", "Ebra",
        "%LINK-5-ADMIN_SHUTDOWN: Interface {eos_if} has been shut down by the administrator"),
    *_t("link-state", "linux", "train", "kernel",
        "bonding: {bond}: making interface {lnx_if} the new active one",
        "{lnx_if}: renamed from eth{small}; operstate [[DOWN|UP]]"),
    *_t("dhcp", "nxos", "train", None,
        "%DHCP_SNOOP-6-LEASE_EXPIRED: lease for {ip} (client {mac_dot}) on Vlan{vlan} expired, binding deleted"),
    *_t("dhcp", "eos", "train", "DhcpRelay",
        "%DHCP_RELAY-4-NO_SERVER_RESPONSE: no DHCPOFFER from server {ip} for client {mac} on Vlan{vlan}"),
    *_t("dhcp", "linux", "train", "dhclient",
        "DHCPREQUEST for {ip} on {lnx_if} to {ip2} port 67",
        "DHCPACK of {ip} from {ip2}"),
    *_t("auth", "nxos", "train", None,
        "%RADIUS-3-RADIUS_ERROR_MESSAGE: RADIUS server {ip} did not answer the access request for {user}",
        "%AUTHPRIV-4-SYSTEM_MSG: Too many failed logins for user {user} from {ip}, account locked - login"),
    *_t("auth", "junos", "train", "sshd",
        "SSHD_LOGIN_LIMIT_EXCEEDED: Limit of {small} failed login attempts reached for user '{user}' from {ip}, closing connection",
        "tac_authen: TACACS+ server {ip} unreachable, cannot authenticate '{user}'"),
    *_t("auth", "eos", "train", "Aaa",
        "%AAA-3-SERVER_DEAD: TACACS+ server {ip} marked dead; authentication requests for {user} time out"),
    *_t("routing", "ios", "train", None,
        "%LDP-5-NBRCHG: LDP Neighbor {ip}:0 ({small}) is [[UP|DOWN (Discovery Hello Hold Timer expired)]]"),
    *_t("routing", "nxos", "train", None,
        "%EIGRP-5-NBRCHANGE_DUAL: eigrp-{small} [{pid}] (default-base) IP-EIGRP(0) {small}: peer {ip} via {nx_if} [[restarted|removed: hold timer expired]]"),
    *_t("routing", "eos", "train", "Isis",
        "%ISIS-4-ADJACENCY_LOST: IS-IS instance {small} dropped its level-1 neighbor {host} on {eos_if} (hello timeout)"),
    *_t("routing", "linux", "train", "bgpd",
        "%MAXPFXEXCEED: {ip}(Unknown): max prefix limit {count2} exceeded, tearing the session down"),
    *_t("anomaly", "nxos", "train", None,
        "%ETH_PORT_SEC-3-STORM_DETECTED: [[Broadcast|Multicast|Unknown unicast]] storm on {nx_if}, rate above {pct}% of bandwidth, packets dropped",
        "%ARP-3-DUP_VADDR_SRC_IP: arp [{pid}] Source address of packet received from {mac_dot} on Vlan{vlan}({nx_if}) is duplicate of local virtual ip, {ip}"),
    *_t("anomaly", "eos", "train", "Bridging",
        "%ETH-4-HOST_FLAPPING: Host {mac} in VLAN {vlan} is flapping between interface {eos_if} and interface {eos_if}"),
    *_t("anomaly", "junos", "train", "l2ald",
        "L2ALD_MAC_MOVE_EXCEEDED: MAC {mac} moved between {jn_if} and another interface more than {small}0 times, learning disabled"),
]

# ---------------------------------------------------------------------------- fillers

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SITES = ("nyc", "lon", "fra", "sjc", "sin", "dc1", "dc2", "ams", "tok", "hq", "br12", "par", "syd", "chi", "dal")
NET_ROLES = ("rtr", "sw", "core", "edge", "agg", "leaf", "spine", "fw", "pe", "ce", "tor", "bb", "dist", "access")
SRV_ROLES = ("web", "db", "dns", "dhcp", "bastion", "lb", "k8s-node", "nat", "vpn", "mon", "gw", "ntp")
USERS = ("admin", "root", "ops", "netops", "jdoe", "asmith", "backup", "ansible", "oracle", "test", "guest",
         "ubnt", "pi", "support", "nagios", "svc-monitor", "deploy", "git", "cisco", "operator", "noc", "mkowalski",
         "lchen", "rpatel", "ftp", "postgres", "user1", "tech")
PROCS = ("bgpd", "zebra", "snmpd", "java", "python3", "nginx", "haproxy", "keepalived", "ospfd", "bird",
         "dockerd", "kubelet", "telegraf", "rsyslogd", "named")
CLIENTS = ("android-5f2a", "iPhone", "LAPTOP-8KQ2", "printer-3f", "ipcam-07", "DESKTOP-1A2B3C", "raspberrypi",
           "ap-floor2", "voip-1123", "thermostat", "nas01")
NIC_DRIVERS = ("e1000e", "igb", "ixgbe", "i40e", "ice", "bnxt_en")


def _ip(r: random.Random) -> str:
    kind = r.random()
    if kind < 0.35:
        return f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    if kind < 0.55:
        return f"172.{r.randint(16, 31)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    if kind < 0.75:
        return f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}"
    if kind < 0.85:
        return f"{r.choice(('192.0.2', '198.51.100', '203.0.113'))}.{r.randint(1, 254)}"
    return f"{r.randint(11, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"


def _mac_octets(r: random.Random) -> list[int]:
    return [r.choice((0x00, 0x3C, 0x50, 0xA4, 0xF8, 0x00, 0x08))] + [r.randint(0, 255) for _ in range(5)]


def _mac(r: random.Random) -> str:
    return ":".join(f"{o:02x}" for o in _mac_octets(r))


def _mac_dot(r: random.Random) -> str:
    o = _mac_octets(r)
    return ".".join(f"{o[i]:02x}{o[i + 1]:02x}" for i in (0, 2, 4))


def _ios_if(r: random.Random) -> str:
    return r.choice((
        lambda: f"GigabitEthernet{r.randint(0, 2)}/{r.randint(0, 3)}",
        lambda: f"GigabitEthernet{r.randint(1, 4)}/0/{r.randint(1, 48)}",
        lambda: f"TenGigabitEthernet{r.randint(1, 2)}/1/{r.randint(1, 8)}",
        lambda: f"FastEthernet0/{r.randint(1, 24)}",
        lambda: f"Serial0/{r.randint(0, 1)}/{r.randint(0, 3)}",
        lambda: f"Port-channel{r.randint(1, 48)}",
        lambda: f"Vlan{r.randint(2, 4000)}",
    ))()


def _ios_if_short(r: random.Random) -> str:
    return r.choice((
        lambda: f"Gi{r.randint(1, 4)}/0/{r.randint(1, 48)}",
        lambda: f"Te{r.randint(1, 2)}/1/{r.randint(1, 8)}",
        lambda: f"Fa0/{r.randint(1, 24)}",
        lambda: f"Gi0/{r.randint(0, 9)}",
    ))()


def _nx_if(r: random.Random) -> str:
    if r.random() < 0.8:
        return f"Ethernet{r.randint(1, 8)}/{r.randint(1, 54)}"
    return f"Ethernet{r.randint(101, 104)}/1/{r.randint(1, 48)}"


def _jn_phys(r: random.Random) -> str:
    if r.random() < 0.15:
        return f"ae{r.randint(0, 31)}"
    return f"{r.choice(('ge', 'xe', 'et', 'ge', 'xe'))}-{r.randint(0, 11)}/{r.randint(0, 3)}/{r.randint(0, 47)}"


def _eos_if(r: random.Random) -> str:
    return r.choice((
        lambda: f"Ethernet{r.randint(1, 52)}",
        lambda: f"Ethernet{r.randint(49, 54)}/1",
        lambda: f"Ethernet{r.randint(1, 32)}/{r.randint(1, 4)}",
    ))()


def _lnx_if(r: random.Random) -> str:
    return r.choice((
        lambda: f"eth{r.randint(0, 3)}",
        lambda: f"eno{r.randint(1, 4)}",
        lambda: f"ens{r.randint(160, 224)}",
        lambda: f"enp{r.randint(1, 9)}s0f{r.randint(0, 1)}",
        lambda: f"enp{r.randint(1, 9)}s0",
    ))()


def _host(r: random.Random) -> str:
    sep = r.choice(("-", "-", "_", ""))
    if r.random() < 0.7:
        name = f"{r.choice(SITES)}{sep}{r.choice(NET_ROLES)}{sep}{r.randint(1, 40):0{r.choice((1, 2))}d}"
    else:
        name = f"{r.choice(SRV_ROLES)}{r.randint(1, 20):02d}{sep}{r.choice(SITES)}"
    return name.upper() if r.random() < 0.15 else name


FILLERS = {
    "ip": _ip, "ip2": _ip, "ip3": _ip,
    "mac": _mac, "mac_dot": _mac_dot,
    "ios_if": _ios_if, "ios_if_short": _ios_if_short, "ios_if_short2": _ios_if_short,
    "nx_if": _nx_if, "nx_if2": _nx_if,
    "jn_phys": _jn_phys,
    "jn_if": lambda r: f"{_jn_phys(r)}.{r.choice((0, 0, 0, r.randint(1, 4094)))}",
    "eos_if": _eos_if,
    "lnx_if": _lnx_if,
    "bond": lambda r: f"bond{r.randint(0, 3)}",
    "nic_drv": lambda r: r.choice(NIC_DRIVERS),
    "pci": lambda r: f"0000:{r.randint(0, 0xAF):02x}:00.{r.randint(0, 3)}",
    "host": _host,
    "user": lambda r: r.choice(USERS),
    "client": lambda r: r.choice(CLIENTS),
    "proc": lambda r: r.choice(PROCS),
    "pool": lambda r: r.choice(("VLAN", "vlan", "POOL-", "guest-", "voice-", "mgmt-")) + str(r.randint(2, 999)),
    "port": lambda r: str(r.randint(1024, 65535)),
    "pid": lambda r: str(r.randint(100, 65000)),
    "uid": lambda r: str(r.randint(1000, 1999)),
    "small": lambda r: str(r.randint(1, 9)),
    "count": lambda r: str(r.randint(2001, 999999)),
    "count2": lambda r: str(r.randint(1000, 999999)),
    "pct": lambda r: str(r.randint(85, 100)),
    "temp": lambda r: str(r.randint(70, 95)),
    "secs": lambda r: str(r.choice((300, 600, 1800, 3600, 21600, 43200)) + r.randint(-60, 60)),
    "lease": lambda r: str(r.choice((3600, 7200, 86400, 604800))),
    "vlan": lambda r: str(r.randint(2, 4000)),
    "ifindex": lambda r: str(r.randint(500, 900)),
    "asn": lambda r: str(r.choice((r.randint(64512, 65534), r.choice((174, 3356, 6939, 13335, 2914, 1299))))),
    "mask": lambda r: r.choice(("255.255.255.0", "255.255.254.0", "255.255.255.128", "255.255.0.0")),
    "plen": lambda r: str(r.choice((16, 22, 23, 24, 24, 25, 26))),
    "hex": lambda r: f"0x{r.getrandbits(32):x}",
    "hex2": lambda r: f"{r.getrandbits(44):x}",
    "hex3": lambda r: f"{r.getrandbits(44):x}",
    "fp": lambda r: "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(43)),
    "serial": lambda r: r.choice(("FOX", "JAE", "SAL", "DCH")) + "".join(r.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(8)),
    "epoch": lambda r: f"{r.randint(1704067200, 1767225599)}.{r.randint(0, 9999):04d}",
    "uptime": lambda r: f"{r.randint(100, 9999999)}.{r.randint(0, 999999):06d}",
    "bird_bgp": lambda r: r.choice(("bgp1", "bgp2", "upstream", "transit_a", "ix_peer", "ebgp_v4", "rr1")),
    "bird_ospf": lambda r: r.choice(("ospf1", "ospf_core", "ospf2", "backbone")),
    "hms": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}",
    "dow": lambda r: r.choice(DAYS),
    "mon": lambda r: r.choice(MONTHS),
    "day": lambda r: str(r.randint(1, 28)),
    "year": lambda r: str(r.choice((2024, 2025))),
}

SLOT = re.compile(r"\{(\w+)\}")
ALTERNATIVE = re.compile(r"\[\[(.*?)\]\]")


def render_body(template: Template, r: random.Random) -> str:
    """Pick the wording alternatives, then fill the slots (a slot named twice gets one value)."""
    text = ALTERNATIVE.sub(lambda m: r.choice(m.group(1).split("|")), template.body)
    values: dict[str, str] = {}

    def fill(m: re.Match) -> str:
        name = m.group(1)
        if name not in values:
            values[name] = FILLERS[name](r)
        return values[name]

    return SLOT.sub(fill, text)


def template_regex(template: Template) -> re.Pattern:
    """A regex that matches every body the template can produce (slots are runs of non-blanks)."""
    out, pos = [], 0
    for m in re.finditer(r"\[\[(.*?)\]\]|\{(\w+)\}", template.body):
        out.append(re.escape(template.body[pos:m.start()]))
        if m.group(1) is not None:
            alts = [SLOT.sub(lambda _m: "\0", a) for a in m.group(1).split("|")]
            out.append("(?:" + "|".join(re.escape(a).replace("\0", r"\S+") for a in alts) + ")")
        else:
            out.append(r"\S+")
        pos = m.end()
    out.append(re.escape(template.body[pos:]))
    return re.compile("".join(out))


# ---------------------------------------------------------------------------- syslog headers

def _stamp_bsd(r: random.Random, millis: bool = False) -> str:
    s = f"{r.choice(MONTHS)} {r.randint(1, 28):2d} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"
    return s + (f".{r.randint(0, 999):03d}" if millis else "")


def _stamp_iso(r: random.Random) -> str:
    frac = r.choice(("", f".{r.randint(0, 999):03d}", f".{r.randint(0, 999999):06d}"))
    tz = r.choice(("Z", "+00:00", "+01:00", "-05:00", "+08:00"))
    return (f"{r.choice((2024, 2025))}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T"
            f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}{frac}{tz}")


def header_and_body(template: Template, body: str, r: random.Random) -> str:
    host = _host(r)
    v = template.vendor
    if v == "ios":
        seq = r.randint(1, 999999)
        return r.choice((
            lambda: f"{seq}: {host}: *{_stamp_bsd(r, True)}: {body}",
            lambda: f"{_stamp_bsd(r)} {host} {seq}: {_stamp_bsd(r, True)} UTC: {body}",
            lambda: f"<{r.choice((187, 188, 189, 190))}>{seq}: {_stamp_bsd(r)}: {body}",
            lambda: f"{_stamp_iso(r)} {host} {body}",
        ))()
    if v == "nxos":
        return r.choice((
            lambda: f"{r.choice((2024, 2025))} {_stamp_bsd(r)} {host} {body}",
            lambda: f"{_stamp_bsd(r)} {host} : {r.choice((2024, 2025))} {_stamp_bsd(r)} UTC: {body}",
            lambda: f"{_stamp_iso(r)} {host} {body}",
        ))()
    prog = template.program
    if prog == "kernel":
        if v == "junos":
            tag = r.choice(("/kernel:", "kernel:"))
        else:
            tag = f"kernel: [{r.randint(1, 999999)}.{r.randint(0, 999999):06d}]"
    elif v == "eos":
        tag = f"{prog}:"
    else:
        tag = f"{prog}[{r.randint(100, 65000)}]:"
    stamp = _stamp_bsd(r) if r.random() < 0.6 else _stamp_iso(r)
    gap = "  " if v == "junos" and r.random() < 0.5 else " "
    return f"{stamp}{gap}{host} {tag} {body}"


# ---------------------------------------------------------------------------- generation

def generate_split(split: str, n: int, seed: int = DEFAULT_SEED) -> list[dict]:
    """`n` records for `split`, balanced over the labels, each {"text", "label", "template", "vendor", "body"}."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    r = random.Random(f"log-intent:{seed}:{split}")
    weights = VENDOR_WEIGHTS[split]
    records: list[dict] = []
    seen: set[str] = set()
    for li, label in enumerate(LABELS):
        want = n // len(LABELS) + (1 if li < n % len(LABELS) else 0)
        pool = [t for t in TEMPLATES if t.label == label and t.split == split]
        vendors = sorted({t.vendor for t in pool}, key=VENDORS.index)
        got = 0
        while got < want:
            vendor = r.choices(vendors, weights=[weights[v] for v in vendors])[0]
            template = r.choice([t for t in pool if t.vendor == vendor])
            body = render_body(template, r)
            text = header_and_body(template, body, r)
            if text in seen:
                continue
            seen.add(text)
            records.append({"text": text, "label": label, "template": template.id, "vendor": vendor, "body": body})
            got += 1
    r.shuffle(records)
    return records


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps({"text": x["text"], "label": x["label"]}, ensure_ascii=False) + "\n" for x in records)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--train", type=int, default=DEFAULT_TRAIN, help="training records")
    p.add_argument("--eval", type=int, default=DEFAULT_EVAL, help="evaluation records")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output directory")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", a.train), ("eval", a.eval)):
        recs = generate_split(split, n, a.seed)
        (a.out / f"{split}.jsonl").write_text(to_jsonl(recs), encoding="utf-8")
        print(f"wrote {n} records to {a.out / f'{split}.jsonl'}")


if __name__ == "__main__":
    main()
