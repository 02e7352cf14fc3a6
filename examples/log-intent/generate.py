#!/usr/bin/env python3
"""Synthetic 5-class network log-intent dataset: link-state, dhcp, auth, routing, anomaly.

Every line is a syslog line in the syntax of a network vendor or a Linux/Windows daemon, with
random interface names, addresses, MACs, hostnames, timestamps, PIDs, users and wording
alternatives. Three splits, each from its own message templates (so its own phrases):

- train: Cisco IOS, NX-OS and IOS XR, Cisco ASA, Juniper Junos, Arista EOS, Huawei VRP, HPE
  Comware, ArubaOS-Switch, FortiOS, PAN-OS, MikroTik RouterOS, Windows event logs and Linux
  daemons (dhcpd, dhclient, kea, odhcpd, netifd, systemd-networkd/logind, sshd, sudo, su,
  hostapd, openvpn, bird, FRR, the kernel). A quarter of its lines carry a generic collector's
  header (RFC 5424, ISO stamp, relay address, none) instead of the vendor's, so the header is no
  cue for the class.
- eval: templates the training split never uses, on IOS, NX-OS, Junos, EOS and Linux, in a
  vendor mix that leans on the ones training has least of. Unchanged since the first generator.
- holdout: three vendors that no training or eval template uses (Nokia SR OS, Extreme EXOS,
  Dell OS10), for what a classifier does on a syntax it has never seen.

A model that merely memorised the training templates does not pass eval or holdout. (The
independent, hand-written blind split, blind.jsonl, is not generated here: see BLIND.md.)

Labels (one per line):
  link-state  physical/data-link status of an interface or bundle member: up/down, carrier,
              line protocol, speed, admin state, LACP membership
  dhcp        address assignment over DHCP: discover/offer/request/ack/nak, leases, pools,
              relay and snooping
  auth        logins and authentication/authorization: SSH, console, web, VPN, AAA,
              RADIUS/TACACS+, 802.1X, sudo/su, lockouts
  routing     routing-protocol sessions and routes: BGP, OSPF, IS-IS, EIGRP, LDP, prefix limits
  anomaly     abnormal conditions: CPU hogs, memory exhaustion, crashes, hardware/environment
              faults, storms, floods, MAC flaps, duplicate addresses

Deterministic for a given seed. `python generate.py` rewrites train.jsonl, eval.jsonl and
holdout.jsonl next to this file (the committed copies were written with the defaults).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

LABELS = ("link-state", "dhcp", "auth", "routing", "anomaly")
EVAL_VENDORS = ("ios", "nxos", "junos", "eos", "linux")
TRAIN_ONLY_VENDORS = (
    "iosxr",
    "asa",
    "huawei",
    "comware",
    "procurve",
    "fortios",
    "panos",
    "mikrotik",
    "windows",
    "bsd",
    "sonicwall",
    "sophos",
    "meraki",
    "f5",
    "fastiron",
    "sonic",
    "netgear",
    "ciscosb",
    "ubiquiti",
    "omniswitch",
    "wlc",
    "checkpoint",
    "watchguard",
    "zyxel",
    "esxi",
    "bmc",
)
HOLDOUT_VENDORS = ("sros", "exos", "os10")
VENDORS = EVAL_VENDORS + TRAIN_ONLY_VENDORS + HOLDOUT_VENDORS
SPLITS = ("train", "eval", "holdout")
DEFAULT_SEED = 20240603
DEFAULT_SIZES = {"train": 2000, "eval": 300, "holdout": 300}
DEFAULT_TRAIN, DEFAULT_EVAL, DEFAULT_HOLDOUT = DEFAULT_SIZES["train"], DEFAULT_SIZES["eval"], DEFAULT_SIZES["holdout"]

# Training leans on IOS and Linux, evaluation on the others: a different vendor mix per split.
VENDOR_WEIGHTS = {
    "train": {"ios": 2.0, "linux": 2.5, "nxos": 1.2, "junos": 1.2, "eos": 1.0, **{v: 1.0 for v in TRAIN_ONLY_VENDORS}},
    "eval": {"ios": 1.5, "linux": 2.0, "nxos": 2.0, "junos": 2.5, "eos": 2.0},
    "holdout": {v: 1.0 for v in HOLDOUT_VENDORS},
}
# Share of training lines whose vendor header is swapped for a generic collector's (RFC 5424,
# ISO stamp, relay address, none at all), so that the header is not a cue for the class.
TRAIN_GENERIC_HEADER = 0.25


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
    *_t(
        "link-state",
        "ios",
        "train",
        None,
        "%LINK-3-UPDOWN: Interface {ios_if}, changed state to [[down|up]]",
        "%LINK-5-CHANGED: Interface {ios_if}, changed state to administratively down",
        "%EC-5-[[UNBUNDLE|BUNDLE]]: Interface {ios_if_short} [[left the|joined]] port-channel Port-channel{small}",
    ),
    *_t(
        "link-state",
        "ios",
        "eval",
        None,
        "%LINEPROTO-5-UPDOWN: Line protocol on Interface {ios_if}, changed state to [[down|up]]",
        "%PM-4-ERR_DISABLE: link-flap error detected on {ios_if_short}, putting {ios_if_short} in err-disable state",
    ),
    *_t(
        "link-state",
        "nxos",
        "train",
        None,
        "%ETHPORT-5-IF_DOWN_LINK_FAILURE: Interface {nx_if} is down (Link failure)",
        "%ETHPORT-5-IF_UP: Interface {nx_if} is up in mode [[access|trunk|routed]]",
        "%ETHPORT-5-SPEED: Interface {nx_if}, operational speed changed to [[1 Gbps|10 Gbps|25 Gbps|100 Gbps]]",
    ),
    *_t(
        "link-state",
        "nxos",
        "eval",
        None,
        "%ETHPORT-5-IF_DOWN_ADMIN_DOWN: Interface {nx_if} is down (Administratively down)",
        "%ETH_PORT_CHANNEL-5-PORT_[[DOWN|UP]]: port-channel{small}: {nx_if} is [[down|up]]",
    ),
    *_t(
        "link-state",
        "junos",
        "train",
        "mib2d",
        (
            "SNMP_TRAP_LINK_[[DOWN|UP]]: ifIndex {ifindex}, ifAdminStatus up(1), ifOperStatus [[down(2)|up(1)]], "
            "ifName {jn_if}"
        ),
    ),
    *_t(
        "link-state",
        "junos",
        "train",
        "kernel",
        "{jn_phys}: link [[down|up]], [[ifd flags 0x8000|media type copper|media type fiber]]",
    ),
    *_t(
        "link-state",
        "junos",
        "eval",
        "lacpd",
        "LACPD_TIMEOUT: {jn_phys}: lacp current while timer expired current Receive State: CURRENT",
    ),
    *_t(
        "link-state",
        "junos",
        "eval",
        "dcd",
        (
            "DCD_LINK_STATUS: interface {jn_phys} carrier [[lost|detected]] "
            "([[loss of signal|remote fault|autonegotiation complete]])"
        ),
    ),
    *_t("link-state", "eos", "train", "Ebra", "%LINK-3-UPDOWN: Interface {eos_if}, changed state to [[down|up]]"),
    *_t(
        "link-state",
        "eos",
        "train",
        "Lag",
        "%LAG-6-MEMBER_[[REMOVED|ADDED]]: Interface {eos_if} [[removed from|added to]] Port-Channel{small}",
    ),
    *_t(
        "link-state",
        "eos",
        "eval",
        "Ebra",
        "%LINEPROTO-5-UPDOWN: Line protocol on Interface {eos_if}, changed state to [[down|up]]",
        "%ETH-6-AUTONEG: Interface {eos_if} autonegotiated to [[1 Gbps|10 Gbps|25 Gbps]] full duplex",
    ),
    *_t(
        "link-state",
        "linux",
        "train",
        "kernel",
        (
            "{nic_drv} {pci} {lnx_if}: NIC Link is "
            "[[Down|Up 1000 Mbps Full Duplex, Flow Control: None|Up 10 Gbps Full Duplex, Flow Control: RX/TX]]"
        ),
        (
            "{bond}: link status definitely "
            "[[down for interface {lnx_if}, disabling it|up for interface {lnx_if}, 10000 Mbps full duplex]]"
        ),
    ),
    *_t("link-state", "linux", "train", "systemd-networkd", "{lnx_if}: [[Lost|Gained]] carrier"),
    *_t(
        "link-state",
        "linux",
        "eval",
        "kernel",
        "IPv6: ADDRCONF(NETDEV_CHANGE): {lnx_if}: link becomes ready",
        "mlx5_core {pci} {lnx_if}: Link [[down|up]]",
    ),
    *_t(
        "link-state",
        "linux",
        "eval",
        "NetworkManager",
        (
            "<info>  [{epoch}] device ({lnx_if}): state change: "
            "[[activated -> unavailable|unavailable -> disconnected]] (reason 'carrier-changed', sys-iface-state: "
            "'managed')"
        ),
    ),
    # ------------------------------------------------------------------ dhcp
    *_t(
        "dhcp",
        "ios",
        "train",
        None,
        "%DHCPD-4-PING_CONFLICT: DHCP address conflict:  server pinged {ip}.",
        "%DHCP-6-ADDRESS_ASSIGN: Interface {ios_if} assigned DHCP address {ip}, mask {mask}, hostname {host}",
        "%DHCPD-4-DECLINE_CONFLICT: DHCP address conflict:  client {mac_dot} declined {ip}.",
    ),
    *_t(
        "dhcp",
        "ios",
        "eval",
        None,
        (
            "%DHCP_SNOOPING-5-DHCP_SNOOPING_UNTRUSTED_PORT: DHCP_SNOOPING drop message on untrusted port, message "
            "type: [[DHCPOFFER|DHCPACK]], MAC sa: {mac_dot}"
        ),
        "%DHCPD-3-NO_FREE_ADDR: pool {pool} has no free addresses left for client {mac_dot}",
    ),
    *_t(
        "dhcp",
        "nxos",
        "train",
        None,
        "%DHCP_SNOOP-4-DHCP_SNOOPING_DROP: dhcp packet dropped on {nx_if} vlan {vlan}: no binding for client {mac_dot}",
        "%DHCP_RELAY-6-RELAY: Relayed [[DHCPDISCOVER|DHCPREQUEST]] from {mac_dot} on Vlan{vlan} to server {ip}",
    ),
    *_t(
        "dhcp",
        "nxos",
        "eval",
        None,
        (
            "%DHCP_SNOOP-5-BINDING_[[ADDED|REMOVED]]: Binding [[added|removed]] for client {mac_dot} address {ip} "
            "lease {lease}s on Vlan{vlan} {nx_if}"
        ),
        (
            "%DHCP_SMART_RELAY-4-GIADDR_MISSING: no secondary giaddr on Vlan{vlan}, falling back to primary {ip} for "
            "offers"
        ),
    ),
    *_t(
        "dhcp",
        "junos",
        "train",
        "jdhcpd",
        "JDHCPD_BIND: Client {mac} bound to {ip} on {jn_if} lease {lease} seconds",
        "%USER-3-DHCPD_POOL_EXHAUSTED: address pool {pool} exhausted, dropping DISCOVER from {mac}",
    ),
    *_t(
        "dhcp",
        "junos",
        "eval",
        "jdhcpd",
        "JDHCPD_RELEASE: Client {mac} released address {ip} on {jn_if}",
        "DH_SVC_SENDMSG_FAILURE: sendmsg() failed sending [[OFFER|ACK]] to client {mac}: No route to host",
    ),
    *_t(
        "dhcp",
        "eos",
        "train",
        "DhcpRelay",
        "%DHCP_RELAY-6-FORWARD: Forwarded [[DHCPDISCOVER|DHCPREQUEST]] from {mac} on Vlan{vlan} to server {ip}",
    ),
    *_t(
        "dhcp",
        "eos",
        "train",
        "Dhcp",
        "%DHCP-6-LEASE_OBTAINED: Interface Management1 acquired address {ip}/{plen} from server {ip2}",
    ),
    *_t(
        "dhcp",
        "eos",
        "eval",
        "DhcpSnooping",
        (
            "%DHCP_SNOOPING-4-INVALID_PKT: [[DHCPOFFER|DHCPACK]] received on untrusted interface {eos_if} in VLAN "
            "{vlan} dropped"
        ),
    ),
    *_t(
        "dhcp",
        "eos",
        "eval",
        "DhcpServer",
        "%DHCP_SERVER-4-LEASE_RENEWED: lease for {ip} renewed by {mac} ([[{client}|no hostname]]) for {lease} seconds",
    ),
    *_t(
        "dhcp",
        "linux",
        "train",
        "dhcpd",
        "DHCPDISCOVER from {mac} via {lnx_if}",
        "DHCPREQUEST for {ip} ({ip2}) from {mac} ({client}) via {lnx_if}",
        "DHCPACK on {ip} to {mac} ({client}) via {lnx_if}",
    ),
    *_t("dhcp", "linux", "train", "dhclient", "bound to {ip} -- renewal in {secs} seconds."),
    *_t(
        "dhcp",
        "linux",
        "eval",
        "dnsmasq-dhcp",
        "DHCPOFFER({lnx_if}) {ip} {mac}",
        "DHCPNAK({lnx_if}) {ip} {mac} wrong address",
    ),
    *_t(
        "dhcp",
        "linux",
        "eval",
        "systemd-networkd",
        "{lnx_if}: DHCPv4 address {ip}/{plen}, gateway {ip2} acquired from {ip3}",
    ),
    # ------------------------------------------------------------------ auth
    *_t(
        "auth",
        "ios",
        "train",
        None,
        (
            "%SEC_LOGIN-4-LOGIN_FAILED: Login failed [user: {user}] [Source: {ip}] [localport: [[22|23]]] [Reason: "
            "Login Authentication Failed] at {hms} UTC {dow} {mon} {day} {year}"
        ),
        (
            "%SEC_LOGIN-5-LOGIN_SUCCESS: Login Success [user: {user}] [Source: {ip}] [localport: 22] at {hms} UTC "
            "{dow} {mon} {day} {year}"
        ),
        "%RADIUS-4-RADIUS_DEAD: RADIUS server {ip}:1812,1813 is not responding.",
    ),
    *_t(
        "auth",
        "ios",
        "eval",
        None,
        (
            "%SSH-5-SSH2_USERAUTH: User '{user}' authentication for SSH2 Session from {ip} (tty = {small}) using "
            "crypto cipher '[[aes256-ctr|aes128-gcm@openssh.com]]', hmac '[[hmac-sha2-256|hmac-sha1]]' "
            "[[Failed|Succeeded]]"
        ),
        "%TACACS-3-TIMEOUT: TACACS+ server {ip} timed out while authenticating user {user}",
    ),
    *_t(
        "auth",
        "nxos",
        "train",
        None,
        "%AUTHPRIV-3-SYSTEM_MSG: pam_aaa:Authentication failed for user {user} from {ip} - sshd[{pid}]",
        (
            "%AUTHPRIV-6-SYSTEM_MSG: pam_unix(dcos_sshd:session): session opened for user {user} by (uid=0) - "
            "dcos_sshd[{pid}]"
        ),
    ),
    *_t(
        "auth",
        "nxos",
        "eval",
        None,
        (
            "%DAEMON-3-SYSTEM_MSG: error: maximum authentication attempts exceeded for invalid user {user} from {ip} "
            "port {port} ssh2 [preauth] - dcos_sshd[{pid}]"
        ),
        "%TACACS-3-TACACS_ERROR_MESSAGE: All servers failed to respond",
    ),
    *_t("auth", "junos", "train", "sshd", "SSHD_LOGIN_FAILED: Login failed for user '{user}' from host '{ip}'"),
    *_t(
        "auth",
        "junos",
        "train",
        "mgd",
        (
            "UI_LOGIN_EVENT: User '{user}' login, class '[[j-super-user|j-operator|j-read-only]]' [{pid}], "
            "ssh-connection '{ip} {port} {ip2} 22', client-mode 'cli'"
        ),
    ),
    *_t(
        "auth",
        "junos",
        "eval",
        "login",
        (
            "LOGIN_ATTEMPTS_THRESHOLD: Threshold for unsuccessful authentication attempts ({small}) reached by user "
            "'{user}'"
        ),
    ),
    *_t(
        "auth",
        "junos",
        "eval",
        "mgd",
        "UI_AUTH_EVENT: Authenticated user '{user}' at permission level '[[j-super-user|j-operator]]'",
    ),
    *_t(
        "auth",
        "eos",
        "train",
        "Aaa",
        "%AAA-4-EXEC_AUTHZ_FAILED: User {user} failed authorization to start a shell",
        "%AAA-5-LOGIN_FAILED: login failed for user {user} on ssh from {ip} ([[bad password|unknown user]])",
    ),
    *_t(
        "auth",
        "eos",
        "eval",
        "Aaa",
        (
            "%AAA-4-NO_AAA_SERVER: no reachable [[TACACS+|RADIUS]] server group, falling back to local authentication "
            "for user {user}"
        ),
        "%AAA-6-ENABLE: user {user} entered privileged mode from {ip}",
    ),
    *_t(
        "auth",
        "linux",
        "train",
        "sshd",
        "Failed password for [[invalid user |]]{user} from {ip} port {port} ssh2",
        (
            "Accepted [[publickey|password]] for {user} from {ip} port {port} "
            "ssh2[[: RSA SHA256:{fp}|: ED25519 SHA256:{fp}|]]"
        ),
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={user}",
    ),
    *_t(
        "auth",
        "linux",
        "train",
        "sudo",
        "pam_unix(sudo:auth): conversation failed; auth could not identify password for [{user}]",
    ),
    *_t(
        "auth",
        "linux",
        "train",
        "sshd",
        "pam_tacplus: tac_connect: connection to TACACS+ server {ip}:49 failed, authentication of {user} unavailable",
    ),
    *_t(
        "auth",
        "linux",
        "train",
        "sudo",
        (
            "pam_unix(sudo:auth): authentication failure; logname={user} uid={uid} euid=0 tty=/dev/pts/{small} "
            "ruser={user} rhost=  user={user}"
        ),
    ),
    *_t(
        "auth",
        "linux",
        "eval",
        "sshd",
        "Invalid user {user} from {ip} port {port}",
        "Disconnected from authenticating user {user} {ip} port {port} [preauth]",
    ),
    *_t(
        "auth",
        "linux",
        "eval",
        "sudo",
        (
            "{user} : [[3 incorrect password attempts|user NOT in sudoers]] ; TTY=pts/{small} ; PWD=/home/{user} ; "
            "USER=root ; COMMAND=/usr/bin/[[systemctl|vtysh|ip]]"
        ),
    ),
    *_t("auth", "linux", "eval", "login", "FAILED LOGIN 1 FROM tty{small} FOR {user}, Authentication failure"),
    # ------------------------------------------------------------------ routing
    *_t(
        "routing",
        "ios",
        "train",
        None,
        (
            "%BGP-5-ADJCHANGE: neighbor {ip} "
            "[[Up|Down BGP Notification sent|Down Peer closed the session|Down Interface flap]]"
        ),
        (
            "%OSPF-5-ADJCHG: Process {small}, Nbr {ip} on {ios_if} from [[LOADING to FULL, Loading Done|FULL to DOWN, "
            "Neighbor Down: Dead timer expired|EXSTART to EXCHANGE, Negotiation Done]]"
        ),
        "%BGP-3-NOTIFICATION: [[sent to|received from]] neighbor {ip} 4/0 (hold time expired) 0 bytes",
    ),
    *_t(
        "routing",
        "ios",
        "train",
        None,
        "%ISIS-4-NBR_TIMEOUT: IS-IS L[[1|2]] neighbor {host} on {ios_if_short} timed out, removing its routes",
    ),
    *_t(
        "routing",
        "ios",
        "eval",
        None,
        (
            "%DUAL-5-NBRCHANGE: EIGRP-IPv4 {small}: Neighbor {ip} ({ios_if}) is "
            "[[up: new adjacency|down: holding time expired|down: Interface PEER-TERMINATION received]]"
        ),
        "%BGP-4-MAXPFX: No. of prefix received from {ip} (afi 0) reaches {count}, max {count2}",
        "%CLNS-5-ADJCHANGE: ISIS: Adjacency to {host} ({ios_if}) [[Up, new adjacency|Down, hold time expired]]",
    ),
    *_t(
        "routing",
        "nxos",
        "train",
        None,
        (
            "%BGP-5-ADJCHANGE:  bgp-{asn} [{pid}] (default) neighbor {ip} "
            "[[Up|Down - holdtimer expired error|Down - sent: cease]]"
        ),
        (
            "%OSPF-5-NBRSTATE: ospf-{small} [{pid}] Process {small} Nbr {ip} on {nx_if} from "
            "[[LOADING to FULL|FULL to DOWN]]"
        ),
    ),
    *_t(
        "routing",
        "nxos",
        "eval",
        None,
        "%OSPF-5-ADJCHANGE: ospf-{small} [{pid}] Nbr {ip} on Vlan{vlan} went [[DOWN|FULL]]",
        (
            "%ISIS-5-ADJCHANGE: isis-{small} [{pid}] LAN adj L2 {host} over {nx_if} - [[UP|DOWN (Hold timer expired)]] "
            "T -1 on MT-0"
        ),
    ),
    *_t(
        "routing",
        "junos",
        "train",
        "rpd",
        (
            "RPD_BGP_NEIGHBOR_STATE_CHANGED: BGP peer {ip} (External AS {asn}) changed state from [[OpenConfirm to "
            "Established (event RecvKeepAlive)|Established to Idle (event RecvNotify)|Established to Idle (event "
            "HoldTime)]]"
        ),
        (
            "RPD_OSPF_NBRDOWN: OSPF neighbor {ip} (realm ospf-v2 {jn_if} area 0.0.0.{small}) state changed from Full "
            "to Down due to [[InActiveTimer|KillNbr]]"
        ),
    ),
    *_t(
        "routing",
        "junos",
        "eval",
        "rpd",
        (
            "RPD_ISIS_ADJDOWN: IS-IS lost L2 adjacency to {host} on {jn_if}, reason: "
            "[[Aged Out|3-Way Handshake Failed|BFD Session Down]]"
        ),
        "RPD_LDP_NBRDOWN: LDP neighbor {ip} ({jn_if}) is down",
        (
            "bgp_hold_timeout: NOTIFICATION sent to {ip} (External AS {asn}): code 4 (Hold Timer Expired Error), "
            "Reason: holdtime expired for {ip}"
        ),
    ),
    *_t(
        "routing",
        "eos",
        "train",
        "Bgp",
        (
            "%BGP-5-ADJCHANGE: peer {ip} (VRF [[default|MGMT|prod]] AS {asn}) old state [[OpenConfirm event "
            "RecvKeepAlive new state Established|Established event HoldTimerExpired new state Idle]]"
        ),
    ),
    *_t(
        "routing",
        "eos",
        "train",
        "Ospf",
        (
            "%OSPF-4-OSPF_ADJACENCY_TEARDOWN: NGB {ip}, interface {ip2} adjacency dropped: "
            "[[nbr did not list our router ID|inactivity timer expired|interface went down]], state was: FULL"
        ),
    ),
    *_t(
        "routing",
        "eos",
        "eval",
        "Bgp",
        (
            "%BGP-4-PEER_MAXPFX: peer {ip} (VRF default AS {asn}) received {count} prefixes, over the maximum-routes "
            "limit {count2}"
        ),
    ),
    *_t(
        "routing",
        "eos",
        "eval",
        "Isis",
        "%ISIS-5-ADJACENCY_CHANGE: Adjacency with {host} on {eos_if} level-2 changed state [[UP -> DOWN|INIT -> UP]]",
    ),
    *_t(
        "routing",
        "linux",
        "train",
        "bird",
        "{bird_bgp}: State changed to [[up|down|start]]",
        (
            "{bird_ospf}: Neighbor {ip} on {lnx_if} changed state from "
            "[[Loading to Full|Full to Down|ExStart to Exchange]]"
        ),
    ),
    *_t(
        "routing",
        "linux",
        "train",
        "bgpd",
        (
            "%ADJCHANGE: neighbor {ip}(Unknown) in vrf default "
            "[[Up|Down Peer closed the session|Down BGP Notification send]]"
        ),
    ),
    *_t(
        "routing",
        "linux",
        "train",
        "isisd",
        (
            "[ISIS] area {small}: neighbor {host} via {lnx_if} "
            "[[lost: no hellos received|established: three-way handshake complete]]"
        ),
    ),
    *_t(
        "routing",
        "linux",
        "eval",
        "ospfd",
        (
            "AdjChg: Nbr {ip}(default) on {lnx_if}:{ip2}: "
            "[[Full -> Deleted (InactivityTimer)|Loading -> Full (LoadingDone)]]"
        ),
    ),
    *_t(
        "routing",
        "linux",
        "eval",
        "bird",
        "{bird_bgp}: Received: [[Hold timer expired|Administrative shutdown|Connection rejected]]",
    ),
    # ------------------------------------------------------------------ anomaly
    *_t(
        "anomaly",
        "ios",
        "train",
        None,
        (
            "%SYS-3-CPUHOG: Task is running for ({count})msecs, more than (2000)msecs ({small}/{small}),process = "
            "[[IP Input|ARP Input|BGP Router|SNMP ENGINE]]."
        ),
        (
            "%SYS-2-MALLOCFAIL: Memory allocation of {count} bytes failed from {hex}, alignment 0 Pool: Processor  "
            "Free: {count2}  Cause: Not enough free memory"
        ),
        (
            "%SW_MATM-4-MACFLAP_NOTIF: Host {mac_dot} in vlan {vlan} is flapping between port {ios_if_short} and port "
            "{ios_if_short2}"
        ),
        (
            "%STORM_CONTROL-3-FILTERED: A packet storm was detected on {ios_if_short}. A packet filter action has been "
            "applied on the interface."
        ),
    ),
    *_t(
        "anomaly",
        "ios",
        "eval",
        None,
        "%IP-4-DUPADDR: Duplicate address {ip} on {ios_if}, sourced by {mac_dot}",
        "%PLATFORM-3-ELEMENT_CRITICAL: R0/0: smand: 1/RP/0: Used Memory value {pct}% exceeds critical level 93%",
    ),
    *_t(
        "anomaly",
        "nxos",
        "train",
        None,
        (
            '%SYSMGR-2-SERVICE_CRASHED: Service "[[bgp|ospf|snmpd|aclmgr]]" (PID {pid}) hasn\'t caught signal 11 (core '
            "will be saved)."
        ),
        "%PLATFORM-2-FAN_REMOVED: Fan module {small} ({serial}) removed",
    ),
    *_t(
        "anomaly",
        "nxos",
        "train",
        None,
        (
            "%COPP-2-COPP_DROPS1: CoPP drops exceed threshold in class: "
            "[[copp-system-p-class-critical|copp-system-p-class-normal|class-default]], check show policy-map "
            "interface control-plane"
        ),
    ),
    *_t(
        "anomaly",
        "nxos",
        "eval",
        None,
        (
            "%L2FM-2-L2FM_MAC_FLAP_DISABLE_LEARN_N3K: Loops detected in the network for mac {mac_dot} among ports "
            "{nx_if} and {nx_if2} vlan {vlan} - Disabling dynamic learning notifications for a period between 120 and "
            "240 seconds on vlan {vlan}"
        ),
        (
            "%KERN-2-SYSTEM_MSG: [{uptime}] Out of memory: Kill process {pid} ([[netstack|l2fm|bgp]]) score {small} or "
            "sacrifice child - kernel"
        ),
        "%PLATFORM-2-PS_FAIL: Power supply {small} failed or shut down (Serial number {serial})",
    ),
    *_t(
        "anomaly",
        "junos",
        "train",
        "chassisd",
        "CHASSISD_FRU_HIGH_TEMP_CONDITION: [[FPC|PEM|Routing Engine]] {small} over high temperature, temp {temp}C",
    ),
    *_t(
        "anomaly",
        "junos",
        "train",
        "kernel",
        (
            "%KERN-3: RT_PFE: NH IPC op {small} (ADD NEXTHOP) failed, err 6 (No Memory) peer_class 0, peer_index 0 "
            "peer_type 10"
        ),
    ),
    *_t(
        "anomaly", "junos", "eval", "chassisd", "CHASSISD_FAN_FAILED: [[Fan Tray|Fan]] {small} [[failed|not spinning]]"
    ),
    *_t(
        "anomaly",
        "junos",
        "eval",
        "kernel",
        "Process ({pid},[[rpd|mgd|snmpd]]) has exceeded 85% of RLIMIT_DATA: used {count} KB Max {count2} KB",
    ),
    *_t(
        "anomaly",
        "junos",
        "eval",
        "jddosd",
        (
            "DDOS_PROTOCOL_VIOLATION_SET: Warning: Host-bound traffic for protocol/exception "
            "[[ARP:aggregate|ICMP:aggregate|BGP:aggregate]] exceeded its allowed bandwidth at fpc {small} for {count} "
            "times"
        ),
    ),
    *_t("anomaly", "eos", "train", "PowerManager", "%ENVMON-4-POWER_SUPPLY_FAILED: Power supply {small} has failed"),
    *_t(
        "anomaly",
        "eos",
        "train",
        "ProcMgr",
        "%PROCMGR-4-PROCESS_TERMINATED: '[[Stp|Lldp|Rib]]' (PID={pid}) has exited with signal [[6|11]]",
    ),
    *_t(
        "anomaly",
        "eos",
        "eval",
        "Sand",
        (
            "%HARDWARE-3-PARITY_ERROR: Uncorrectable parity error detected in [[Jericho0|FE1600]] "
            "[[ingress buffer|TCAM bank 3]]"
        ),
    ),
    *_t(
        "anomaly",
        "eos",
        "eval",
        "StormControl",
        (
            "%STORMCONTROL-4-DISCARDING: Interface {eos_if} [[broadcast|multicast]] traffic exceeded {pct}% threshold, "
            "discarding"
        ),
    ),
    *_t(
        "anomaly",
        "linux",
        "train",
        "kernel",
        "watchdog: BUG: soft lockup - CPU#{small} stuck for {small}s! [{proc}:{pid}]",
        "nf_conntrack: nf_conntrack: table full, dropping packet",
        "TCP: request_sock_TCP: Possible SYN flooding on port {port}. Sending cookies.  Check SNMP counters.",
        "{proc}[{pid}]: segfault at {hex} ip {hex2} sp {hex3} error [[4|6]] in libc.so.6",
    ),
    *_t(
        "anomaly",
        "linux",
        "train",
        "kernel",
        "IPv6: {lnx_if}: IPv6 duplicate address fe80::{small}a:{small}ff:fe{small}b:{small}c used by {mac} detected!",
        "br0: received packet on {lnx_if} with own address as source address (addr:{mac}, vlan:{vlan})",
    ),
    *_t(
        "anomaly",
        "linux",
        "eval",
        "kernel",
        (
            "Out of memory: Killed process {pid} ({proc}) total-vm:{count}kB, anon-rss:{count2}kB, file-rss:0kB, "
            "shmem-rss:0kB"
        ),
        "mce: [Hardware Error]: Machine check events logged",
        "neighbour: arp_cache: neighbor table overflow!",
        "{nic_drv} {pci} {lnx_if}: Detected Hardware Unit Hang",
    ),
    # --------------------------------------------------- broader training coverage
    # The first training split taught several kinds of event with one vendor's wording only (a
    # packet storm only as IOS, a TACACS+ outage only as a Linux PAM line, ...), so a classifier
    # could not learn the kind of event apart from the syntax. These add the same kinds in other
    # vendors' syntax, phrased as those systems phrase them and never as an eval template does.
    *_t(
        "link-state",
        "ios",
        "train",
        None,
        "%PM-4-ERR_RECOVER: Attempting to recover from link-flap err-disable state on {ios_if_short}",
        "%LINEPROTO-5-PPP: Line protocol on Serial0/{small}/0 [[went down, keepalive missed|came up, LCP open]]",
    ),
    *_t(
        "link-state",
        "nxos",
        "train",
        None,
        "%ETH_PORT_CHANNEL-5-PORT_SUSPENDED: {nx_if}: {nx_if} is suspended (LACP PDUs not received)",
        "%ETHPORT-5-IF_ADMIN_UP: Interface {nx_if} is admin up",
    ),
    *_t(
        "link-state",
        "junos",
        "train",
        "lacpd",
        "LACP_INTF_DOWN: ae{small}: Interface marked down due to lacp timeout on member {jn_phys}",
    ),
    *_t(
        "link-state",
        "eos",
        "train",
        "Ebra",
        "%LINK-5-ADMIN_SHUTDOWN: Interface {eos_if} has been shut down by the administrator",
    ),
    *_t(
        "link-state",
        "linux",
        "train",
        "kernel",
        "bonding: {bond}: making interface {lnx_if} the new active one",
        "{lnx_if}: renamed from eth{small}; operstate [[DOWN|UP]]",
    ),
    *_t(
        "dhcp",
        "nxos",
        "train",
        None,
        "%DHCP_SNOOP-6-LEASE_EXPIRED: lease for {ip} (client {mac_dot}) on Vlan{vlan} expired, binding deleted",
    ),
    *_t(
        "dhcp",
        "eos",
        "train",
        "DhcpRelay",
        "%DHCP_RELAY-4-NO_SERVER_RESPONSE: no DHCPOFFER from server {ip} for client {mac} on Vlan{vlan}",
    ),
    *_t(
        "dhcp",
        "linux",
        "train",
        "dhclient",
        "DHCPREQUEST for {ip} on {lnx_if} to {ip2} port 67",
        "DHCPACK of {ip} from {ip2}",
    ),
    *_t(
        "auth",
        "nxos",
        "train",
        None,
        "%RADIUS-3-RADIUS_ERROR_MESSAGE: RADIUS server {ip} did not answer the access request for {user}",
        "%AUTHPRIV-4-SYSTEM_MSG: Too many failed logins for user {user} from {ip}, account locked - login",
    ),
    *_t(
        "auth",
        "junos",
        "train",
        "sshd",
        (
            "SSHD_LOGIN_LIMIT_EXCEEDED: Limit of {small} failed login attempts reached for user '{user}' from {ip}, "
            "closing connection"
        ),
        "tac_authen: TACACS+ server {ip} unreachable, cannot authenticate '{user}'",
    ),
    *_t(
        "auth",
        "eos",
        "train",
        "Aaa",
        "%AAA-3-SERVER_DEAD: TACACS+ server {ip} marked dead; authentication requests for {user} time out",
    ),
    *_t(
        "routing",
        "ios",
        "train",
        None,
        "%LDP-5-NBRCHG: LDP Neighbor {ip}:0 ({small}) is [[UP|DOWN (Discovery Hello Hold Timer expired)]]",
    ),
    *_t(
        "routing",
        "nxos",
        "train",
        None,
        (
            "%EIGRP-5-NBRCHANGE_DUAL: eigrp-{small} [{pid}] (default-base) IP-EIGRP(0) {small}: peer {ip} via {nx_if} "
            "[[restarted|removed: hold timer expired]]"
        ),
    ),
    *_t(
        "routing",
        "eos",
        "train",
        "Isis",
        (
            "%ISIS-4-ADJACENCY_LOST: IS-IS instance {small} dropped its level-1 neighbor {host} on {eos_if} (hello "
            "timeout)"
        ),
    ),
    *_t(
        "routing",
        "linux",
        "train",
        "bgpd",
        "%MAXPFXEXCEED: {ip}(Unknown): max prefix limit {count2} exceeded, tearing the session down",
    ),
    *_t(
        "anomaly",
        "nxos",
        "train",
        None,
        (
            "%ETH_PORT_SEC-3-STORM_DETECTED: [[Broadcast|Multicast|Unknown unicast]] storm on {nx_if}, rate above "
            "{pct}% of bandwidth, packets dropped"
        ),
        (
            "%ARP-3-DUP_VADDR_SRC_IP: arp [{pid}] Source address of packet received from {mac_dot} on "
            "Vlan{vlan}({nx_if}) is duplicate of local virtual ip, {ip}"
        ),
    ),
    *_t(
        "anomaly",
        "eos",
        "train",
        "Bridging",
        "%ETH-4-HOST_FLAPPING: Host {mac} in VLAN {vlan} is flapping between interface {eos_if} and interface {eos_if}",
    ),
    *_t(
        "anomaly",
        "junos",
        "train",
        "l2ald",
        (
            "L2ALD_MAC_MOVE_EXCEEDED: MAC {mac} moved between {jn_if} and another interface more than {small}0 times, "
            "learning disabled"
        ),
    ),
    # ------------------------------------------------- more vendors and daemons (training only)
    # Nine more vendors' syntaxes and more Linux daemons, so that the kind of event is learnt apart
    # from any one vendor's way of writing it. Modelled on the vendors' documented message formats,
    # never on an eval (or holdout) template's phrasing.
    # Cisco IOS XR
    *_t(
        "link-state",
        "iosxr",
        "train",
        "ifmgr",
        "%PKT_INFRA-LINK-3-UPDOWN : Interface {xr_if}, changed state to [[Down|Up]]",
        "%PKT_INFRA-LINK-5-CHANGED : Interface {xr_if}, changed state to Administratively Down",
    ),
    *_t(
        "link-state",
        "iosxr",
        "train",
        "BM-DISTRIB",
        (
            "%L2-BM-6-ACTIVE : {xr_if} is "
            "[[no longer Active as part of Bundle-Ether{small} (Link is down)|Active as part of Bundle-Ether{small}]]"
        ),
    ),
    *_t(
        "dhcp",
        "iosxr",
        "train",
        "dhcpd",
        "%IP-DHCPD-6-BINDING_CREATED : DHCPv4 binding created for client {mac_dot}, address {ip}, on {xr_if}",
        "%IP-DHCPD-3-NO_ADDRESS : Pool {pool} has no address left, DHCPDISCOVER from {mac_dot} ignored",
    ),
    *_t(
        "auth",
        "iosxr",
        "train",
        "locald_DLRSC",
        (
            "%SECURITY-LOGIN-4-AUTHEN_FAILED : Failed authentication attempt by user '{user}' from '{ip}' on "
            "'[[vty0|vty1|con0_RP0_CPU0]]'"
        ),
    ),
    *_t(
        "auth",
        "iosxr",
        "train",
        "SSHD_",
        (
            "%SECURITY-SSHD-6-INFO_SUCCESS : Successfully authenticated user '{user}' from '{ip}' on "
            "'vty{small}'(cipher 'aes128-ctr', mac 'hmac-sha2-256')"
        ),
        "%SECURITY-TACACSD-4-SERVER_DOWN : TACACS+ server {ip}/49 vrf default is DOWN",
    ),
    *_t(
        "routing",
        "iosxr",
        "train",
        "bgp",
        (
            "%ROUTING-BGP-5-ADJCHANGE : neighbor {ip} "
            "[[Up|Down - BGP Notification sent, hold time expired|Down - Peer closing down the session]] (VRF: "
            "default) (AS: {asn})"
        ),
    ),
    *_t(
        "routing",
        "iosxr",
        "train",
        "ospf",
        (
            "%ROUTING-OSPF-5-ADJCHG : Process {small}, Nbr {ip} on {xr_if} in area 0 from "
            "[[FULL to DOWN, Neighbor Down: dead timer expired|LOADING to FULL, Loading Done]], vrf default vrfid "
            "0x60000000"
        ),
    ),
    *_t(
        "routing",
        "iosxr",
        "train",
        "isis",
        "%ROUTING-ISIS-5-ADJCHANGE : Adjacency to {host} ({xr_if}) (L2) [[Up, New adjacency|Down, Neighbor forgot us]]",
    ),
    *_t(
        "anomaly",
        "iosxr",
        "train",
        "sysmgr",
        "%OS-SYSMGR-3-ERROR : [[bgp|ospf|ifmgr|netio]](1) (jid {pid}) (pid {pid}) abnormally terminated, restarting",
    ),
    *_t(
        "anomaly",
        "iosxr",
        "train",
        "envmon",
        "%PLATFORM-ENVMON-2-TEMP : [[Inlet0|Hotspot0|Outlet1]] temperature {temp}C above the major threshold",
    ),
    *_t(
        "anomaly",
        "iosxr",
        "train",
        "wd_disk_mon",
        (
            "%PLATFORM-WATCHDOG-3-MEMORY_STATE_CHANGE : Memory state changed to [[Severe|Critical]], free memory "
            "{count2} KB"
        ),
    ),
    # Cisco ASA
    *_t(
        "link-state",
        "asa",
        "train",
        None,
        "%ASA-4-411003: Configuration status on Interface {asa_if}, changed state to administratively down",
        "%ASA-4-411004: Configuration status on Interface {asa_if}, changed state to up",
    ),
    *_t(
        "dhcp",
        "asa",
        "train",
        None,
        "%ASA-6-604101: DHCP client interface {asa_if}: Allocated ip = {ip}, mask = {mask}, gw = {ip2}",
        "%ASA-6-604103: DHCP daemon interface {asa_if}: address granted {mac_dot} ({ip})",
        "%ASA-6-604104: DHCP daemon interface {asa_if}: address released {mac_dot} ({ip})",
    ),
    *_t(
        "auth",
        "asa",
        "train",
        None,
        '%ASA-6-605004: Login denied from {ip}/{port} to {asa_if}:{ip2}/[[ssh|https|telnet]] for user "{user}"',
        '%ASA-6-605005: Login permitted from {ip}/{port} to {asa_if}:{ip2}/[[ssh|https]] for user "{user}"',
        (
            "%ASA-6-113005: AAA user authentication Rejected : reason = [[AAA failure|Invalid password]] : server = "
            "{ip} : user = {user}"
        ),
    ),
    *_t(
        "routing",
        "asa",
        "train",
        None,
        (
            "%ASA-5-503001: Process {small}, Nbr {ip} on {asa_if} from "
            "[[FULL to DOWN, Neighbor Down: Dead timer expired|LOADING to FULL, Loading Done]]"
        ),
    ),
    *_t(
        "anomaly",
        "asa",
        "train",
        None,
        "%ASA-2-321006: System Memory usage reached {pct}%",
        (
            "%ASA-4-733100: [ SYN Attack] drop rate-1 exceeded. Current burst rate is {small}00 per second, max "
            "configured rate is 100; Cumulative total count is {count}"
        ),
        "%ASA-1-105005: (Primary) Lost Failover communications with mate on interface {asa_if}",
    ),
    # Huawei VRP
    *_t(
        "link-state",
        "huawei",
        "train",
        None,
        "%%01IFPDT/4/IF_STATE(l)[{seqn}]:Interface {hw_if} has turned into [[UP|DOWN]] state.",
        (
            "%%01IFNET/4/LINK_STATE(l)[{seqn}]:The line protocol [[IP|IPv6]] on the interface {hw_if} has entered the "
            "[[UP|DOWN]] state."
        ),
        (
            "%%01LACP/4/LACP_STATE_DOWN(l)[{seqn}]:The LACP state is down. (PortName={hw_if}, "
            "TrunkName=Eth-Trunk{small}, Reason=The remote LACP port timed out.)"
        ),
    ),
    *_t(
        "dhcp",
        "huawei",
        "train",
        None,
        (
            "%%01DHCPSNP/4/REPLYTRAP(l)[{seqn}]:The number of the discarded DHCP reply packets on the untrusted "
            "interface exceeded the threshold. (IfIndex={ifindex}, Interface={hw_if}, VlanID={vlan}, "
            "DiscardedNumber={small}0)"
        ),
        (
            "%%01DHCP/5/REQIPV4(l)[{seqn}]:The DHCP client acquired IP address successfully. (Client "
            "InterfaceName=Vlanif{vlan}, ServerId={ip2}, Acquired IpAddress={ip}, Mask={mask}, Gateway={ip3})"
        ),
        (
            "%%01IPPOOL/4/POOL_LEASE_USEDUP(l)[{seqn}]:The IP addresses of the address pool were used up. "
            "(PoolName={pool})"
        ),
    ),
    *_t(
        "auth",
        "huawei",
        "train",
        None,
        (
            "%%01SSH/4/SSH_FAIL(l)[{seqn}]:Failed to login through SSH. (Ip={ip}, VpnInstanceName=_public_, "
            "UserName={user}, Times={small}, FailedReason=[[password incorrect|user not exist]])"
        ),
        (
            "%%01SHELL/5/LOGIN(l)[{seqn}]:The user succeeded in logging in to VTY{small}. (UserType=SSH, "
            'UserName={user}, AuthenticationMethod="AAA", Ip={ip})'
        ),
        "%%01RDS/4/RDAUTHDOWN(l)[{seqn}]:RADIUS authentication server ( IP:{ip} ) is down!",
    ),
    *_t(
        "routing",
        "huawei",
        "train",
        None,
        (
            "%%01BGP/3/STATE_CHG_UPDOWN(l)[{seqn}]:The status of the peer {ip} changed from "
            "[[ESTABLISHED to IDLE|OPENCONFIRM to ESTABLISHED]]. (InstanceName=Public, "
            "StateChangeReason=[[Hold Timer Expired|Up|Receive Notification]])"
        ),
        (
            "%%01OSPF/3/NBR_CHG_DOWN(l)[{seqn}]:Neighbor event:neighbor state changed to Down. (ProcessId={small}, "
            "NeighborAddress={ip}, NeighborEvent=[[InactivityTimer|KillNbr|1-Way]], NeighborPreviousState=Full, "
            "NeighborCurrentState=Down)"
        ),
        (
            "%%01ISIS/4/ADJ_CHANGE_LEVEL(l)[{seqn}]:The neighbor of ISIS was changed. (IsisProcessId={small}, "
            "Neighbor={sysid}, InterfaceName={hw_if}, CurrentState=[[down|up]], ChangeType=HOLDTIME_EXPIRED, "
            "Level=level-2)"
        ),
    ),
    *_t(
        "anomaly",
        "huawei",
        "train",
        None,
        (
            "%%01SYSTEM/2/hwCPUUtilizationRisingAlarm_active(l)[{seqn}]:The CPU usage exceeded the pre-alarm "
            "threshold. (TrapSeverity=2, CpuUsage={pct}%, CpuUsageThreshold=80%)"
        ),
        (
            "%%01DEVM/1/hwFanFail_active(l)[{seqn}]:The fan partially failed. (EntPhysicalName=FAN {small}, "
            "EntityTrapFaultID=137216, Reason=Fan speed is abnormal.)"
        ),
        (
            "%%01L2IFPPI/4/MFLPVLANALARM(l)[{seqn}]:MAC address flapping occurred in VLAN. (VLAN={vlan}, "
            "MacAddress={mac_dash}, OriginalPort={hw_if}, FlappingPort={hw_if2})"
        ),
    ),
    # HPE Comware (H3C)
    *_t(
        "link-state",
        "comware",
        "train",
        None,
        "IFNET/3/PHY_UPDOWN: Physical state on the interface {cw_if} changed to [[down|up]].",
        (
            "LAGG/6/LAGG_INACTIVE_PARTNER: Member port {cw_if} of aggregation group BAGG{small} changed to the "
            "inactive state, because the aggregation configuration of its peer port is incorrect."
        ),
    ),
    *_t(
        "dhcp",
        "comware",
        "train",
        None,
        (
            "DHCPS/5/DHCPS_ALLOCATE_IP: DHCP server received a DHCP client's request packet on interface "
            "Vlan-interface{vlan}, and allocated an IP address {ip}(lease {lease} seconds) for the DHCP client(MAC "
            "{mac_dash}) from {pool} pool."
        ),
        (
            "DHCPS/4/DHCPS_IP_CONFLICT: A conflict IP {ip} from {pool} pool was detected by DHCP server on interface "
            "Vlan-interface{vlan}."
        ),
    ),
    *_t(
        "auth",
        "comware",
        "train",
        None,
        (
            "SSHS/6/SSHS_LOG: Authentication failed for {user} from {ip} port {port} because of invalid username or "
            "wrong password."
        ),
        "LOGIN/5/LOGIN_FAILED: {user} failed to log in from {ip}.",
        "SHELL/5/SHELL_LOGIN: {user} logged in from {ip}.",
    ),
    *_t(
        "routing",
        "comware",
        "train",
        None,
        (
            "OSPF/5/OSPF_NBR_CHG: OSPF {small} Neighbor {ip}({cw_if}) changed from "
            "[[FULL to DOWN|LOADING to FULL|EXCHANGE to LOADING]]."
        ),
        (
            "BGP/5/BGP_STATE_CHANGED: BGP.: {ip} state has changed from "
            "[[ESTABLISHED to IDLE|OPENCONFIRM to ESTABLISHED]]."
        ),
        "ISIS/5/ISIS_NBR_CHG: IS-IS {small}, Level-2 adjacency {sysid} ({cw_if}), state changed to [[down|up]].",
    ),
    *_t(
        "anomaly",
        "comware",
        "train",
        None,
        "DEV/2/FAN_FAILED: Chassis {small} Fan {small} failed.",
        "DEV/3/POWER_FAILED: Power {small} failed.",
        "DIAG/1/MEM_EXCEED_THRESHOLD: Memory usage threshold has been exceeded.",
        "LOOPDETECT/4/LOOPDETECT_LOOPED: A loop was detected on {cw_if} in VLAN {vlan}.",
    ),
    # ArubaOS-Switch (ProCurve)
    *_t(
        "link-state",
        "procurve",
        "train",
        None,
        "00076 ports: port {pc_port} is now [[off-line|on-line]]",
        "00078 ports: trunk Trk{small} is now [[inactive|active]]",
    ),
    *_t(
        "dhcp",
        "procurve",
        "train",
        None,
        (
            "05127 dhcp-snoop: Attempt to release address {ip} leased to port {pc_port} detected on port {pc_port}, "
            "packet dropped"
        ),
        "00083 dhcp: Vlan{vlan}: Got IP address {ip} from DHCP server {ip2}",
    ),
    *_t(
        "auth",
        "procurve",
        "train",
        None,
        "00179 mgr: SME [[SSH|TELNET]] from {ip} - MANAGER Mode",
        "00419 auth: Invalid user name/password on [[SSH|WEB|TELNET]] session from {ip}",
        "03130 dca: Port {pc_port} - client {mac_hp} authentication failed (802.1X)",
    ),
    *_t(
        "routing",
        "procurve",
        "train",
        None,
        "00201 ospf: Adjacency with neighbor {ip} on VLAN {vlan} [[changed state to FULL|lost: dead timer expired]]",
    ),
    *_t(
        "anomaly",
        "procurve",
        "train",
        None,
        "00077 FFI: port {pc_port}-Excessive [[CRC/alignment errors|broadcasts|multicasts]]. See help.",
        "00068 chassis: [[Fan failure detected|Power supply {small} failed|Over temperature condition detected]]",
        "00438 loop_protect: port {pc_port} disabled - loop detected",
    ),
    # Fortinet FortiOS (key=value event logs)
    *_t(
        "link-state",
        "fortios",
        "train",
        None,
        (
            'logid="0100020009" type="event" subtype="system" level="warning" vd="root" logdesc="Interface status '
            'changed" action="interface-stat-change" msg="Interface {fg_port} status changed to [[DOWN|UP]]"'
        ),
        (
            'logid="0100020052" type="event" subtype="system" level="notice" vd="root" logdesc="Aggregate member '
            'status changed" msg="Member {fg_port} of aggregate interface agg{small} is [[down|up]]"'
        ),
    ),
    *_t(
        "dhcp",
        "fortios",
        "train",
        None,
        (
            'logid="0100026001" type="event" subtype="system" level="information" vd="root" logdesc="DHCP Ack log" '
            'interface="{fg_port}" dhcp_msg="Ack" mac="{mac_upper}" ip={ip} lease={lease} hostname="{client}" '
            'msg="DHCP server sends a DHCPACK"'
        ),
        (
            'logid="0100026003" type="event" subtype="system" level="information" vd="root" logdesc="DHCP client lease '
            'granted" interface="wan{small}" ip={ip} netmask={mask} gateway={ip2} msg="DHCP client lease granted"'
        ),
    ),
    *_t(
        "auth",
        "fortios",
        "train",
        None,
        (
            'logid="0100032002" type="event" subtype="system" level="alert" vd="root" logdesc="Admin login failed" '
            'user="{user}" ui="[[https|ssh]]({ip})" srcip={ip} action="login" status="failed" '
            'reason="[[passwd_invalid|name_invalid]]" msg="Administrator {user} login failed from [[https|ssh]]({ip}) '
            'because of invalid [[password|user name]]"'
        ),
        (
            'logid="0101039426" type="event" subtype="vpn" level="alert" vd="root" logdesc="SSL VPN login fail" '
            'action="ssl-login-fail" tunneltype="ssl-web" remip={ip} user="{user}" '
            'reason="sslvpn_login_permission_denied" msg="SSL user failed to logged in"'
        ),
    ),
    *_t(
        "routing",
        "fortios",
        "train",
        None,
        (
            'logid="0103020301" type="event" subtype="router" level="warning" vd="root" logdesc="BGP neighbor status '
            'changed" msg="BGP: %BGP-5-ADJCHANGE: VRF 0 neighbor {ip} [[Down Hold Timer Expired|Up|Down User reset]]"'
        ),
        (
            'logid="0103020300" type="event" subtype="router" level="information" vd="root" logdesc="Routing log" '
            'msg="OSPF: neighbor {ip} on {fg_port} changed state to [[Down|Full]]"'
        ),
    ),
    *_t(
        "anomaly",
        "fortios",
        "train",
        None,
        (
            'logid="0100020100" type="event" subtype="system" level="critical" vd="root" logdesc="Conserve mode" '
            'msg="Kernel enters memory conserve mode"'
        ),
        (
            'logid="0720018432" type="anomaly" subtype="anomaly" level="alert" vd="root" srcip={ip} dstip={ip2} '
            'service="[[tcp|udp|icmp]]" attack="[[tcp_syn_flood|udp_flood|icmp_flood]]" action="clear_session" '
            'msg="anomaly: [[tcp_syn_flood|udp_flood|icmp_flood]], {count} > threshold 2000"'
        ),
        (
            'logid="0100022111" type="event" subtype="system" level="critical" vd="root" logdesc="Power supply '
            'failure" msg="Power supply {small} failure"'
        ),
    ),
    # Palo Alto PAN-OS (SYSTEM log, CSV)
    *_t(
        "link-state",
        "panos",
        "train",
        None,
        (
            'port,0,{pa_time},,link-change,{pa_if},0,0,general,informational,"Port {pa_if}: '
            '[[Down|Up 1Gb/s-full duplex|Up 10Gb/s-full duplex]]"'
        ),
    ),
    *_t(
        "dhcp",
        "panos",
        "train",
        None,
        (
            'dhcp,0,{pa_time},,lease-start,,0,0,general,informational,"DHCP lease started ip {ip} --> mac {mac} - '
            'hostname {client}, interface {pa_if}"'
        ),
        (
            'dhcp,0,{pa_time},,lease-end,,0,0,general,informational,"DHCP lease ended ip {ip} --> mac {mac}, interface '
            '{pa_if}"'
        ),
    ),
    *_t(
        "auth",
        "panos",
        "train",
        None,
        (
            "auth,0,{pa_time},,auth-fail,,0,0,general,medium,\"failed authentication for user '{user}'. Reason: "
            'Invalid username/password. From: {ip}."'
        ),
        (
            'globalprotect,0,{pa_time},,globalprotectgateway-auth-fail,,0,0,general,informational,"GlobalProtect '
            "gateway user authentication failed. Login from: {ip}, User name: {user}, Reason: Authentication failed: "
            'Invalid username or password"'
        ),
    ),
    *_t(
        "routing",
        "panos",
        "train",
        None,
        (
            "routing,0,{pa_time},,routed-bgp-peer-[[left-established|enter-established]],,0,0,"
            'general,informational,"BGP peer session [[left established state|established]]: '
            'virtual-router default, peer {ip}"'
        ),
        (
            'routing,0,{pa_time},,routed-ospf-neighbor-[[down|full]],,0,0,general,informational,"OSPF adjacency with '
            'neighbor {ip} on {pa_if} [[went down|is full]]"'
        ),
    ),
    *_t(
        "anomaly",
        "panos",
        "train",
        None,
        'hw,0,{pa_time},,psu-failure,,0,0,general,critical,"Power supply #{small} has failed"',
        (
            'general,0,{pa_time},,dp-cpu-high,,0,0,general,high,"Dataplane CPU utilization is {pct}%, above the alarm '
            'threshold"'
        ),
    ),
    # MikroTik RouterOS (topics, then the message)
    *_t(
        "link-state",
        "mikrotik",
        "train",
        None,
        "interface,info {mt_if} link [[down|up (speed 1G, full duplex)|up (speed 10G, full duplex)]]",
    ),
    *_t(
        "dhcp",
        "mikrotik",
        "train",
        None,
        "dhcp,info dhcp{small} [[assigned|deassigned]] {ip} [[to|from]] {mac_upper}",
        "dhcp,info dhcp-client on {mt_if} got IP address {ip}",
        "dhcp,warning dhcp{small} offering lease {ip} for {mac_upper} without success",
    ),
    *_t(
        "auth",
        "mikrotik",
        "train",
        None,
        "system,error,critical login failure for user {user} from {ip} via [[ssh|winbox|web]]",
        "system,info,account user {user} logged in from {ip} via [[ssh|winbox|api]]",
    ),
    *_t(
        "routing",
        "mikrotik",
        "train",
        None,
        "route,ospf,info OSPFv2 neighbor {ip}: state change from [[Full to Down|Loading to Full]]",
        "bgp,info peer {bird_bgp} [[Established|TCP connection closed|hold timer expired]]",
    ),
    *_t(
        "anomaly",
        "mikrotik",
        "train",
        None,
        "interface,warning {mt_if} excessive broadcasts/multicasts, probably a loop",
        "system,error,critical router was rebooted without proper shutdown",
    ),
    # Windows event log, forwarded as syslog
    *_t(
        "link-state",
        "windows",
        "train",
        "e1dexpress",
        "27: Intel(R) Ethernet Connection I219-LM Network link is disconnected.",
        "32: Intel(R) Ethernet Connection I219-LM Network link has been established at [[1Gbps|100Mbps]] full duplex.",
    ),
    *_t(
        "dhcp",
        "windows",
        "train",
        "Microsoft-Windows-DHCP-Server",
        "1020: Scope, {ip}, is {pct} percent full with only {small} IP addresses remaining.",
    ),
    *_t(
        "auth",
        "windows",
        "train",
        "Microsoft-Windows-Security-Auditing",
        (
            "4625: An account failed to log on. Account Name: {user} Failure Reason: Unknown user name or bad "
            "password. Source Network Address: {ip}"
        ),
        (
            "4624: An account was successfully logged on. Account Name: {user} Logon Type: [[3|10]] Source Network "
            "Address: {ip}"
        ),
        "4740: A user account was locked out. Account Name: {user}",
    ),
    *_t(
        "anomaly",
        "windows",
        "train",
        "Microsoft-Windows-Resource-Exhaustion-Detector",
        (
            "2004: Windows successfully diagnosed a low virtual memory condition. The following programs consumed the "
            "most virtual memory: {proc}.exe ({pid}) consumed {count} bytes"
        ),
    ),
    *_t(
        "anomaly",
        "windows",
        "train",
        "Microsoft-Windows-Kernel-Power",
        "41: The system has rebooted without cleanly shutting down first.",
    ),
    # More Linux daemons
    *_t(
        "link-state",
        "linux",
        "train",
        "kernel",
        "r8169 {pci} {lnx_if}: Link is [[Down|Up - 1Gbps/Full - flow control rx/tx]]",
        "tg3 {pci} {lnx_if}: Link is [[down|up at 1000 Mbps, full duplex]]",
        "{bond}: port {small}({lnx_if}) entered [[disabled|forwarding]] state",
    ),
    *_t(
        "link-state",
        "linux",
        "train",
        "netifd",
        "Interface '[[wan|lan|wan6]]' is now [[down|up]]",
        "Network device '{lnx_if}' link is [[down|up]]",
    ),
    *_t(
        "dhcp",
        "linux",
        "train",
        "kea-dhcp4",
        (
            "INFO  [kea-dhcp4.leases/{pid}.{pid}] DHCP4_LEASE_ALLOC [hwtype=1 {mac}], cid=[no info], tid={hex}: lease "
            "{ip} has been allocated for {lease} seconds"
        ),
        (
            "WARN  [kea-dhcp4.alloc-engine/{pid}.{pid}] ALLOC_ENGINE_V4_ALLOC_FAIL [hwtype=1 {mac}], cid=[no info], "
            "tid={hex}: failed to allocate an IPv4 address after {small} attempt(s)"
        ),
    ),
    *_t(
        "dhcp", "linux", "train", "odhcpd", "DHCPV6 [[SOLICIT|REQUEST|RENEW]] IA_NA from {hex2} on br-lan: ok {ip6}/128"
    ),
    *_t(
        "auth",
        "linux",
        "train",
        "hostapd",
        (
            "wlan{small}: STA {mac} IEEE 802.1X: "
            "[[authentication failed - EAP type: 25 (PEAP)|authenticated - EAP type: 25 (PEAP)]]"
        ),
    ),
    *_t("auth", "linux", "train", "systemd-logind", "New session {small}{small} of user {user}."),
    *_t("auth", "linux", "train", "su", "FAILED SU (to root) {user} on pts/{small}"),
    *_t(
        "auth",
        "linux",
        "train",
        "openvpn",
        "{ip}:{port} TLS Auth Error: Auth Username/Password verification failed for peer",
    ),
    *_t(
        "routing",
        "linux",
        "train",
        "bgpd",
        "%NOTIFICATION: [[sent to|received from]] neighbor {ip} 6/2 (Cease/Administrative Shutdown) 0 bytes",
    ),
    *_t(
        "routing",
        "linux",
        "train",
        "bfdd",
        (
            "[{hex2}] state-change: [mhop:no peer:{ip} local:{ip2} vrf:default ifname:{lnx_if}] "
            "[[up -> down reason:control-expired|init -> up]]"
        ),
    ),
    *_t(
        "anomaly",
        "linux",
        "train",
        "kernel",
        "CPU{small}: Core temperature above threshold, cpu clock throttled (total events = {count})",
        "EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#{small}_DIMM#0",
        "INFO: task {proc}:{pid} blocked for more than 120 seconds.",
        "blk_update_request: I/O error, dev sda, sector {count} op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0",
    ),
    # Appliances, BSD and more daemons: short messages in the many plain-English styles that small
    # vendors use, so that no class is learnt from one phrasing family only.
    # FreeBSD / pfSense / OPNsense / OpenBGPD
    *_t("link-state", "bsd", "train", "kernel", "{bsd_if}: link state changed to [[DOWN|UP]]"),
    *_t("link-state", "bsd", "train", "check_reload_status", "Linkup starting {bsd_if}"),
    *_t(
        "dhcp",
        "bsd",
        "train",
        "dhcpleases",
        "Sending HUP signal to dns daemon({pid}) after lease {ip} for {mac} was added",
    ),
    *_t(
        "dhcp",
        "bsd",
        "train",
        "dhcpd",
        "DHCPRELEASE of {ip} from {mac} ({client}) via {bsd_if} (found)",
        "DHCPINFORM from {ip} via {bsd_if}",
    ),
    *_t(
        "auth",
        "bsd",
        "train",
        "php-fpm",
        "/index.php: webConfigurator authentication error for user '{user}' from: {ip}",
        "/index.php: Successful login for user '{user}' from: {ip} (Local Database)",
    ),
    *_t(
        "routing",
        "bsd",
        "train",
        "bgpd",
        (
            "neighbor {ip} ({bird_bgp}): state change [[Established -> Idle, reason: Hold timer expired|OpenConfirm -> "
            "Established, reason: KEEPALIVE message received|Established -> Idle, reason: NOTIFICATION received]]"
        ),
    ),
    *_t(
        "anomaly",
        "bsd",
        "train",
        "kernel",
        "pid {pid} ({proc}), jid 0, uid 0, was killed: [[out of swap space|failed to reclaim memory]]",
        "arp: {ip} moved from {mac} to {mac2} on {bsd_if}",
        "sonewconn: pcb {hex}: Listen queue overflow: {small}93 already in queue awaiting acceptance",
    ),
    # SonicWall (key=value)
    *_t("link-state", "sonicwall", "train", None, 'c=0 m=89 msg="Interface {sw_if} Link Is [[Down|Up]]" n={seqn}'),
    *_t(
        "dhcp",
        "sonicwall",
        "train",
        None,
        'c=0 m=1098 msg="DHCP Server: IP address [[assigned|released]]" n={seqn} src={ip} mac={mac}',
    ),
    *_t(
        "auth",
        "sonicwall",
        "train",
        None,
        (
            'c=32 m=30 msg="Administrator login denied due to bad credentials" n={seqn} src={ip}:{port}:{sw_if} '
            'usr="{user}"'
        ),
        'c=16 m=199 msg="User login from an internal zone allowed" n={seqn} src={ip}:{port}:{sw_if} usr="{user}"',
    ),
    *_t(
        "routing",
        "sonicwall",
        "train",
        None,
        'c=0 m=1149 msg="OSPF: neighbor {ip} on {sw_if} changed state to [[Full|Down]]" n={seqn}',
    ),
    *_t(
        "anomaly",
        "sonicwall",
        "train",
        None,
        'c=32 m=25 msg="Possible SYN Flood on IF {sw_if}" n={seqn} src={ip}:{port} dst={ip2}:{port}',
        'c=0 m=1253 msg="Fan failure detected" n={seqn}',
    ),
    # Sophos Firewall (key=value)
    *_t(
        "link-state",
        "sophos",
        "train",
        None,
        (
            'log_id=062910617701 log_type="Event" log_component="Interface" log_subtype="System" status="[[Down|Up]]" '
            'message="Interface {sp_if} is [[down|up]]"'
        ),
    ),
    *_t(
        "dhcp",
        "sophos",
        "train",
        None,
        (
            'log_id=063410617710 log_type="Event" log_component="DHCP Server" log_subtype="System" status="Lease" '
            'message="Lease IP {ip} to MAC {mac} for {lease} seconds"'
        ),
    ),
    *_t(
        "auth",
        "sophos",
        "train",
        None,
        (
            'log_id=062910617703 log_type="Event" log_component="GUI" log_subtype="Admin" status="Failed" '
            'user_name="{user}" src_ip={ip} message="User {user} failed to login to Webadmin from {ip} because of '
            'wrong credentials"'
        ),
        (
            'log_id=062910617701 log_type="Event" log_component="SSL VPN Authentication" log_subtype="Authentication" '
            'status="Successful" user_name="{user}" src_ip={ip} message="User {user} authenticated successfully to '
            'login to SSL VPN"'
        ),
    ),
    *_t(
        "anomaly",
        "sophos",
        "train",
        None,
        (
            'log_id=063910617702 log_type="Event" log_component="Appliance" log_subtype="System" status="Critical" '
            'message="Memory usage reached {pct}%"'
        ),
    ),
    # Cisco Meraki
    *_t(
        "link-state",
        "meraki",
        "train",
        None,
        "events port {small} status changed from [[1Gfdx to down|down to 1Gfdx|100fdx to down]]",
    ),
    *_t(
        "dhcp",
        "meraki",
        "train",
        None,
        (
            "events dhcp lease of ip {ip} from server mac {mac} for client mac {mac2} from router {ip2} on subnet "
            "{mask} with dns 8.8.8.8"
        ),
        "events dhcp no offers for mac {mac} host = {ip2}",
    ),
    *_t(
        "auth",
        "meraki",
        "train",
        None,
        (
            "events type=8021x_eap_failure radio='1' vap='0' client_mac='{mac_upper}' client_ip='0.0.0.0' "
            "identity='{user}' aid='{count}'"
        ),
        "events type=8021x_auth radio='1' vap='0' client_mac='{mac_upper}' identity='{user}'",
    ),
    *_t("routing", "meraki", "train", None, "events ospf neighbor {ip} on vlan {vlan} changed state to [[full|down]]"),
    *_t(
        "anomaly",
        "meraki",
        "train",
        None,
        "events type=rogue_ssid_detected ssid='{client}' bssid='{mac}' channel='{small}' rssi='{small}0'",
        "events Spanning-tree loop detected on port {small}, port blocked",
    ),
    # F5 BIG-IP
    *_t("link-state", "f5", "train", "bcm56xxd", "012c0011:6: Link: {f5_if} is [[DOWN|UP]]"),
    *_t(
        "auth",
        "f5",
        "train",
        "httpd",
        (
            "01070417:5: AUDIT - user {user} - RAW: httpd(pam_audit): User={user} tty=(unknown) host={ip} failed to "
            'login after 1 attempts (start="{mon} {day} {hms} {year}" end="{mon} {day} {hms} {year}").'
        ),
    ),
    *_t("routing", "f5", "train", "bgpd", "BGP: {ip}-Outgoing [FSM] Hold Timer Expiry"),
    *_t(
        "anomaly",
        "f5",
        "train",
        "tmm",
        "01010201:2: Inet port exhaustion on {ip} to {ip2}:443 (proto 6)",
        "011e0001:4: Limiting icmp unreach response from 251 to 250 packets/sec",
    ),
    *_t("anomaly", "f5", "train", "chmand", "012a0004:1: Chassis power module {small} failed"),
    # Ruckus / Brocade ICX (FastIron)
    *_t(
        "link-state",
        "fastiron",
        "train",
        None,
        "System: Interface ethernet {fi_if}, state [[down|up]]",
        "System: Logical link on interface ethernet {fi_if} is [[down|up]]",
    ),
    *_t("dhcp", "fastiron", "train", None, "DHCPC: ve {vlan} obtained IP address {ip} from server {ip2}"),
    *_t(
        "auth",
        "fastiron",
        "train",
        None,
        "Security: SSH login by {user} from src IP {ip} from src MAC {mac_dot} to PRIVILEGED EXEC mode",
        "Security: SSH login failed for user {user} from src IP {ip}",
    ),
    *_t(
        "routing",
        "fastiron",
        "train",
        None,
        "BGP: Peer {ip} [[DOWN (Holdtime expired)|UP (ESTABLISHED)]]",
        "OSPF: interface {ip} state changed from [[DR to Down|Down to DR]]",
    ),
    *_t(
        "anomaly",
        "fastiron",
        "train",
        None,
        "System: Fan {small} (Rear Side Panel, Rear Fan), failed",
        (
            "System: Stack unit {small} Temperature {temp} C degrees, warning level 70.0 C degrees, shutdown level "
            "85.0 C degrees"
        ),
    ),
    # SONiC (Linux switch OS: swss, syncd, FRR)
    *_t(
        "link-state",
        "sonic",
        "train",
        "swss#orchagent",
        ":- updatePortOperStatus: Port Ethernet{small}{small} oper state set from [[up to down|down to up]]",
    ),
    *_t(
        "anomaly",
        "sonic",
        "train",
        "syncd#syncd",
        ":- on_switch_shutdown_request: switch {hex} shutdown request: ASIC error",
    ),
    *_t(
        "anomaly",
        "sonic",
        "train",
        "pmon#thermalctld",
        "High temperature warning: PSU {small} current temperature {temp}C, high threshold 70C",
    ),
    # Consumer routers (NETGEAR-style event log)
    *_t("dhcp", "netgear", "train", None, "[DHCP IP: ({ip})] to MAC address {mac},"),
    *_t(
        "auth",
        "netgear",
        "train",
        None,
        "[Admin login failure] from source {ip},",
        "[WLAN access rejected: incorrect security] from MAC address {mac},",
    ),
    *_t(
        "anomaly",
        "netgear",
        "train",
        None,
        "[DoS Attack: [[SYN/ACK Scan|ACK Scan|RST Scan]]] from source: {ip}, port {port},",
    ),
    *_t("link-state", "netgear", "train", None, "[Internet [[disconnected|connected]]] WAN port link [[down|up]],"),
    # More Linux daemons
    *_t("link-state", "linux", "train", "dhcpcd", "{lnx_if}: carrier [[lost|acquired]]"),
    *_t(
        "link-state",
        "linux",
        "train",
        "wpa_supplicant",
        "wlan{small}: CTRL-EVENT-DISCONNECTED bssid={mac} reason=[[3|4|8]]",
    ),
    *_t("link-state", "linux", "train", "kernel", "vmxnet3 {pci} {lnx_if}: NIC Link is [[Down|Up 10000 Mbps]]"),
    *_t(
        "dhcp",
        "linux",
        "train",
        "dhcpcd",
        "{lnx_if}: leased {ip} for {lease} seconds",
        "{lnx_if}: rebinding lease of {ip}",
    ),
    *_t(
        "dhcp",
        "linux",
        "train",
        "udhcpc",
        "lease of {ip} obtained, lease time {lease}",
        "sending [[discover|select for {ip}|renew to {ip2}]]",
    ),
    *_t("dhcp", "linux", "train", "dhcpd", "DHCPDISCOVER from {mac} via {lnx_if}: network {ip}/{plen}: no free leases"),
    *_t(
        "auth",
        "linux",
        "train",
        "radiusd",
        (
            "Auth: ({count}) Login incorrect (mschap: MS-CHAP2-Response is incorrect): [{user}/<via Auth-Type = eap>] "
            "(from client {host} port {small} cli {mac_dash})"
        ),
        "Auth: ({count}) Login OK: [{user}] (from client {host} port {small})",
    ),
    *_t(
        "auth",
        "linux",
        "train",
        "krb5kdc",
        (
            "AS_REQ (2 etypes {18 17}) {ip}: PREAUTH_FAILED: {user}@EXAMPLE.COM for krbtgt/EXAMPLE.COM@EXAMPLE.COM, "
            "Preauthentication failed"
        ),
    ),
    *_t(
        "auth",
        "linux",
        "train",
        "sshd",
        "pam_sss(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip} user={user}",
    ),
    *_t("auth", "linux", "train", "wpa_supplicant", "wlan{small}: CTRL-EVENT-EAP-FAILURE EAP authentication failed"),
    *_t(
        "routing",
        "linux",
        "train",
        "gobgpd",
        'level=info msg="Peer [[Up|Down]]" Key={ip} State=BGP_FSM_[[OPENCONFIRM|ESTABLISHED]] Topic=Peer',
    ),
    *_t(
        "routing",
        "linux",
        "train",
        "ldpd",
        "nbr_fsm: neighbor ID {ip} state [[OPERATIONAL -> PRESENT|OPENSENT -> OPERATIONAL]]",
    ),
    *_t(
        "routing",
        "linux",
        "train",
        "zebra",
        "[{hex2}] {ip}/{plen} via {ip2} dev {lnx_if} [[installed|withdrawn]] in the kernel routing table",
    ),
    *_t(
        "anomaly",
        "linux",
        "train",
        "smartd",
        "Device: /dev/sd[[a|b|c]] [SAT], {small} Currently unreadable (pending) sectors",
    ),
    *_t("anomaly", "linux", "train", "mdadm", "DegradedArray event detected on md device /dev/md{small}"),
    *_t(
        "anomaly",
        "linux",
        "train",
        "systemd",
        "{proc}.service: Main process exited, code=killed, status=[[11/SEGV|6/ABRT|9/KILL]]",
        "{proc}.service: Failed with result 'oom-kill'.",
    ),
    *_t(
        "anomaly",
        "linux",
        "train",
        "kernel",
        "NETDEV WATCHDOG: {lnx_if} ({nic_drv}): transmit queue {small} timed out",
        "thermal thermal_zone{small}: critical temperature reached ({temp} C), shutting down",
    ),
    # More Windows events
    *_t(
        "auth",
        "windows",
        "train",
        "Microsoft-Windows-Security-Auditing",
        "4771: Kerberos pre-authentication failed. Account Name: {user} Client Address: ::ffff:{ip} Failure Code: 0x18",
    ),
    *_t(
        "auth",
        "windows",
        "train",
        "RemoteAccess",
        (
            "20271: The user CORP\\{user} connected from {ip} but failed an authentication attempt due to the "
            "following reason: The specified user account does not exist."
        ),
    ),
    *_t(
        "dhcp",
        "windows",
        "train",
        "Microsoft-Windows-Dhcp-Client",
        (
            "1001: Your computer was not assigned an address from the network (by the DHCP Server) for the Network "
            "Card with network address 0x{hex2}."
        ),
    ),
    *_t(
        "dhcp",
        "windows",
        "train",
        "Microsoft-Windows-DHCP-Server",
        '1063: There are no IP addresses available for lease in the scope or superscope "{pool}".',
    ),
    *_t(
        "anomaly",
        "windows",
        "train",
        "Tcpip",
        (
            "4199: The system detected an address conflict for IP address {ip} with the system having network hardware "
            "address {mac_upper}."
        ),
    ),
    # More Junos (training templates only; eval's Junos templates are untouched)
    *_t(
        "anomaly",
        "junos",
        "train",
        "RT_IDS",
        (
            "RT_SCREEN_TCP: SYN flood! source: {ip}:{port}, destination: {ip2}:443, zone name: untrust, interface "
            "name: {jn_if}"
        ),
    ),
    # Small-business switches, wireless controllers, server management, more firewalls and the
    # mail/web/file daemons whose logins are auth events too.
    # Cisco small-business switches (CBS/SG)
    *_t(
        "link-state",
        "ciscosb",
        "train",
        None,
        "%LINK-[[W-Down|I-Up]]:  {sb_if}",
        "%TRUNK-[[W-PORTNOTACTIVE|I-PORTACTIVE]]: Port {sb_if} is [[not active|active]] in Port-channel po{small}",
    ),
    *_t(
        "dhcp",
        "ciscosb",
        "train",
        None,
        "%DHCP_SNOOPING-W-DHCPUNTRUSTED: DHCP server reply received on untrusted port {sb_if}, packet discarded",
    ),
    *_t(
        "auth",
        "ciscosb",
        "train",
        None,
        "%AAA-W-REJECT: New ssh connection for user {user}, source {ip} destination {ip2}  REJECTED",
        "%AAA-I-CONNECT: User CLI session for user {user} over ssh , source {ip} destination  {ip2} ACCEPTED",
    ),
    *_t(
        "anomaly",
        "ciscosb",
        "train",
        None,
        "%STORM-W-BROADCAST: [[Broadcast|Multicast]] storm detected on {sb_if}, traffic limited",
        "%ENV-E-FANFAIL: Fan {small} is not operational",
    ),
    # Ubiquiti (UniFi, EdgeOS)
    *_t("link-state", "ubiquiti", "train", "switch", "port {small} link [[down|up 1000Mbps full-duplex]]"),
    *_t("dhcp", "ubiquiti", "train", "dhcpd", "DHCPOFFER on {ip} to {mac} ({client}) via {lnx_if}"),
    *_t("routing", "ubiquiti", "train", "zebra", "Nexthop {ip} for {ip2}/{plen} unreachable, route removed"),
    # Alcatel-Lucent OmniSwitch
    *_t(
        "link-state",
        "omniswitch",
        "train",
        None,
        "swCmm portMgr INFO: Port {small}/{small}/{small}{small} link [[DOWN|UP]]",
    ),
    *_t(
        "auth",
        "omniswitch",
        "train",
        None,
        "swCmm sessionMgr WARNING: Authentication failed for user {user} from {ip} (ssh)",
    ),
    *_t(
        "routing",
        "omniswitch",
        "train",
        None,
        "swCmm ospf INFO: Neighbor {ip} state [[FULL -> DOWN|LOADING -> FULL]] (vlan {vlan})",
    ),
    *_t(
        "anomaly",
        "omniswitch",
        "train",
        None,
        "swCmm chassisSupervision ALARM: Power supply {small} failure, chassis running on reduced power",
    ),
    # Cisco wireless LAN controller (AireOS)
    *_t(
        "auth",
        "wlc",
        "train",
        None,
        "*Dot1x_NW_MsgTask_0: %DOT1X-3-AUTH_FAIL: Authentication failed for client {mac} on AP {host}",
        (
            "*aaaQueueReader: %AAA-3-RADIUS_SERVER_FAILED: RADIUS server {ip}:1812 failed to respond to request (ID "
            "{small}) for client {mac} / user '{user}'"
        ),
    ),
    *_t(
        "dhcp",
        "wlc",
        "train",
        None,
        "*DHCP Socket Task: %DHCP-3-NO_OFFER: No DHCP offer received from server {ip} for client {mac}",
    ),
    *_t(
        "anomaly",
        "wlc",
        "train",
        None,
        "*apfRogueTask_2: %APF-4-ROGUE_DETECTED: Rogue AP {mac} detected on AP {host}, RSSI -{small}0",
    ),
    # Check Point, WatchGuard, Zyxel firewalls
    *_t(
        "auth",
        "checkpoint",
        "train",
        None,
        "product: SmartConsole; action: Failed Log In; user: {user}; src: {ip}; reason: Wrong user name or password",
        "product: Mobile Access; action: Log In; user: {user}; src: {ip}; auth_status: Successful Login",
    ),
    *_t(
        "anomaly",
        "checkpoint",
        "train",
        None,
        (
            "product: SmartDefense; action: Drop; attack: [[SYN Attack|Port Scan|Network Quota]]; src: {ip}; dst: "
            "{ip2}; Attack Info: threshold of {count} exceeded"
        ),
    ),
    *_t(
        "link-state",
        "checkpoint",
        "train",
        None,
        (
            "product: ClusterXL; action: Info; fw_message: Interface {lnx_if} is "
            "[[down (Cluster Control Protocol packets are not received)|up]]"
        ),
    ),
    *_t(
        "auth",
        "watchguard",
        "train",
        None,
        'msg_id="3E00-0002" Authentication of [[Firebox-DB|RADIUS]] user [{user}@{ip}] rejected, password is incorrect',
    ),
    *_t(
        "link-state",
        "watchguard",
        "train",
        None,
        'msg_id="1C00-0001" Interface {wg_if} link status changed to [[down|up]]',
    ),
    *_t(
        "anomaly",
        "watchguard",
        "train",
        None,
        'msg_id="3000-0148" [[SYN flood|UDP flood|ICMP flood]] attack against {ip} from {ip2} detected.',
    ),
    *_t("dhcp", "zyxel", "train", None, 'msg="DHCP server assigned {ip} to {client}({mac_upper})" note="DHCP ACK"'),
    *_t(
        "auth",
        "zyxel",
        "train",
        None,
        (
            'msg="Failed login attempt to Device from http/https (incorrect password or inexistent username)" '
            'src="{ip}" user="{user}"'
        ),
    ),
    *_t("link-state", "zyxel", "train", None, 'msg="Port {small} is link [[down|up]]" note="Port Status"'),
    # Server management: VMware ESXi, iDRAC/iLO, IPMI
    *_t("link-state", "esxi", "train", "vmkernel", "cpu{small}:{pid})vmnic{small}: NIC Link is [[Down|Up 10000 Mbps]]"),
    *_t(
        "auth",
        "esxi",
        "train",
        "hostd",
        "[[Accepted password for user root from {ip}|Rejected password for user {user} from {ip}]]",
        "Cannot login {user}@{ip}",
    ),
    *_t(
        "anomaly",
        "esxi",
        "train",
        "vmkernel",
        (
            "cpu{small}:{pid})WARNING: Heap: {small}: Heap globalCartel-{small} already at its maximum size. Cannot "
            "expand."
        ),
        (
            "cpu{small}:{pid})ScsiDeviceIO: SCSI device naa.{hex2} performance has deteriorated. I/O latency increased "
            "from average value of {small}00 microseconds to {count} microseconds."
        ),
    ),
    *_t(
        "anomaly",
        "bmc",
        "train",
        None,
        (
            "[[iDRAC|iLO]]: [[Fan {small} RPM is less than the lower critical threshold|The power supply {small} is "
            "not receiving input power|The system inlet temperature is greater than the upper critical threshold]]"
        ),
        "SEL: Temperature #0x{small}0 | Upper Critical going high | Asserted",
        "SEL: Memory #0x{small}2 | Correctable ECC | Asserted",
    ),
    *_t(
        "auth",
        "bmc",
        "train",
        None,
        "[[iDRAC|iLO]]: Login failed from {ip} for user {user} (invalid credentials)",
        "[[iDRAC|iLO]]: Session opened for user {user} from {ip} using [[redfish|web|ssh]]",
    ),
    # Mail, web and file daemons: their logins are auth events
    *_t(
        "auth",
        "linux",
        "train",
        "dovecot",
        (
            "auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser={user} "
            "rhost={ip}"
        ),
        (
            "imap-login: Disconnected (auth failed, {small} attempts in {small} secs): user=<{user}>, method=PLAIN, "
            "rip={ip}, lip={ip2}"
        ),
    ),
    *_t(
        "auth",
        "linux",
        "train",
        "postfix/smtpd",
        "warning: unknown[{ip}]: SASL LOGIN authentication failed: authentication failure",
    ),
    *_t("auth", "linux", "train", "vsftpd", '[{user}] FAIL LOGIN: Client "{ip}"'),
    *_t(
        "auth",
        "linux",
        "train",
        "apache2",
        (
            "[auth_basic:error] [pid {pid}] [client {ip}:{port}] AH01617: user {user}: authentication failure for "
            '"/admin": Password Mismatch'
        ),
    ),
    # More Linux network daemons
    *_t("link-state", "linux", "train", "ifplugd(eth0)", "Link beat [[lost|detected]]."),
    *_t("link-state", "linux", "train", "systemd-networkd", "{lnx_if}: Link [[UP|DOWN]]"),
    *_t("link-state", "linux", "train", "switchd", "{swp}: link [[down|up]], speed [[10G|25G|100G]]"),
    *_t(
        "dhcp",
        "linux",
        "train",
        "dhcrelay",
        "Forwarded BOOTREQUEST for {mac} to {ip}",
        "Forwarded BOOTREPLY for {mac} to {ip}",
    ),
    *_t("dhcp", "linux", "train", "dhcpd", "peer [[dhcp-failover|failover-peer]]: peer holds all free leases"),
    *_t(
        "dhcp",
        "linux",
        "train",
        "NetworkManager",
        "<info>  [{epoch}] dhcp4 ({lnx_if}): option ip_address           => '{ip}'",
    ),
    *_t("routing", "linux", "train", "keepalived", "VRRP_Instance(VI_{small}) Entering [[MASTER|BACKUP|FAULT]] STATE"),
    *_t(
        "routing",
        "linux",
        "train",
        "ospf6d",
        "Neighbor {ip} state change [[Full -> Init (InactivityTimer)|Loading -> Full (LoadingDone)]] on {lnx_if}",
    ),
    *_t(
        "routing",
        "linux",
        "train",
        "bird",
        "{bird_bgp}: Error: Hold timer expired",
        "{bird_ospf}: Adjacency to {ip} on {lnx_if} [[lost|established]]",
    ),
    *_t(
        "anomaly",
        "linux",
        "train",
        "kernel",
        "{lnx_if}: {small}{small} output errors, {count} packets dropped (tx ring full)",
        "EDAC MC{small}: {small} UE memory read error on CPU_SrcID#1_MC#0_Chan#0_DIMM#1",
    ),
    *_t(
        "anomaly",
        "windows",
        "train",
        "Microsoft-Windows-Kernel-Power",
        "137: The system firmware has changed the processor's maximum frequency due to a thermal event.",
    ),
    *_t(
        "auth",
        "windows",
        "train",
        "Microsoft-Windows-Security-Auditing",
        (
            "6273: Network Policy Server denied access to a user. User: Account Name: CORP\\{user} Calling Station "
            "Identifier: {mac_dash} Reason: Authentication failed due to a user credentials mismatch."
        ),
    ),
    # ---------------------------------------------------------------- holdout vendors
    # Vendors whose templates are all in the holdout split: no training or eval template uses their
    # syntax, so the holdout split measures what a new vendor does to the classifier. Written
    # before any training on this generator, and never used to add training templates.
    # Nokia SR OS
    *_t(
        "link-state",
        "sros",
        "holdout",
        None,
        (
            '[[MINOR|WARNING]]: SNMP #[[2004|2005]] Base {nk_port} "Interface {nk_port} is '
            '[[not operational|operational]]"'
        ),
        'WARNING: LAG #2001 Base lag-{small} "Port {nk_port} in lag-{small} is [[down|up]]"',
    ),
    *_t(
        "dhcp",
        "sros",
        "holdout",
        None,
        (
            'MINOR: DHCP #2002 vprn{small} Lease "Lease for {ip} with MAC {mac} on SAP {nk_port}:{vlan} '
            '[[created|deleted]]"'
        ),
        (
            'WARNING: DHCP #2007 Base Relay "DHCP relay: no response from server {ip} for client {mac} on interface '
            'to-clients"'
        ),
    ),
    *_t(
        "auth",
        "sros",
        "holdout",
        None,
        'MINOR: SECURITY #2011 Base {user} "Failed [[SSH|Telnet|console]] login attempt by user {user} from {ip}"',
        'INFO: SECURITY #2001 Base {user} "User {user} from {ip} logged in"',
        'MAJOR: SECURITY #2030 Base "RADIUS server {ip} is not responding, authentication falling back to local"',
    ),
    *_t(
        "routing",
        "sros",
        "holdout",
        None,
        (
            'MINOR: BGP #2002 Base Peer 1: {ip} "Base Peer 1: {ip}: moved from higher state ESTABLISHED to lower state '
            'IDLE due to event HOLD TIME EXPIRED"'
        ),
        (
            'WARNING: OSPF #2001 Base VR:  1 OSPFv2 (0) "LCL_RTR_ID {ip2}: Neighbor {ip} on interface to-core changed '
            'state from [[Full to Down|Loading to Full]]"'
        ),
        'MINOR: ISIS #2002 Base ISIS (0) "Adjacency with {host} on {nk_port} changed state to [[DOWN|UP]]"',
    ),
    *_t(
        "anomaly",
        "sros",
        "holdout",
        None,
        'MAJOR: CHASSIS #2058 Base Fan {small} "Fan tray {small} failed"',
        'CRITICAL: CHASSIS #2001 Base Power supply {small} "Power supply {small} is out of service"',
        'MINOR: SYSTEM #2009 Base CPU "CPU utilization is {pct}%, above the configured threshold"',
    ),
    # Extreme EXOS
    *_t(
        "link-state",
        "exos",
        "holdout",
        None,
        "<Info:vlan.msgs.portLinkStateDown> Port {ex_port} link down",
        "<Info:vlan.msgs.portLinkStateUp> Port {ex_port} link UP at speed [[1 Gbps|10 Gbps|100 Mbps]] and full-duplex",
    ),
    *_t(
        "dhcp",
        "exos",
        "holdout",
        None,
        "<Warn:DHCP.Snooping.RogueSrv> Rogue DHCP server {ip} detected on port {ex_port} vlan {vlan}",
        "<Noti:bootprelay.RelayReq> Relayed DHCP request from {mac} on vlan {vlan} to {ip}",
    ),
    *_t(
        "auth",
        "exos",
        "holdout",
        None,
        "<Warn:AAA.authFail> Login failed for user {user} through [[ssh|telnet|console]] ({ip})",
        "<Noti:AAA.authPass> Login passed for user {user} through ssh ({ip})",
    ),
    *_t(
        "routing",
        "exos",
        "holdout",
        None,
        (
            "<Noti:BGP.Misc.NbrStateChange> BGP neighbor {ip} state changed from "
            "[[Established to Idle|OpenConfirm to Established]]"
        ),
        (
            "<Info:ospf.neighbor.NbrChange> OSPF neighbor {ip} on vlan v{vlan} changed state from "
            "[[Full to Down|Loading to Full]]"
        ),
    ),
    *_t(
        "anomaly",
        "exos",
        "holdout",
        None,
        "<Crit:HAL.Fan.Failed> Fan tray {small} has failed",
        "<Warn:ELRP.Report.Message> ELRP loop detected on VLAN v{vlan} port {ex_port}",
    ),
    # Dell OS10
    *_t(
        "link-state",
        "os10",
        "holdout",
        None,
        "%IFM_OSTATE_[[DN|UP]]: Interface operational state is [[down|up]] :{os_if}",
        "%IFM_ASTATE_DN: Interface admin state down :{os_if}",
    ),
    *_t(
        "dhcp",
        "os10",
        "holdout",
        None,
        "%DHCP_RELAY_NO_SERVER: No response from DHCP server {ip} for client {mac} on vlan{vlan}",
        "%DHCP_CLIENT_LEASE: mgmt1/1/1 obtained address {ip}/{plen} from {ip2}",
    ),
    *_t(
        "auth",
        "os10",
        "holdout",
        None,
        "%USR_LOGIN_FAIL: Login failed for user {user} from {ip} via ssh",
        "%USR_LOGIN: User {user} logged in via ssh from {ip}",
    ),
    *_t(
        "routing",
        "os10",
        "holdout",
        None,
        "%BGP_NBR_[[DOWN|UP]]: BGP neighbor {ip} in vrf default changed state to [[Idle|Established]]",
        "%OSPFV2_NBR_STATE_CHG: OSPFv2 neighbor {ip} on {os_if} state changed to [[Down|Full]]",
    ),
    *_t(
        "anomaly",
        "os10",
        "holdout",
        None,
        "%EQM_FAN_FAIL: Fan tray {small} fan {small} failed",
        "%EQM_THERMAL_CRIT: Unit {small} temperature {temp}C crossed the critical threshold",
        "%SYSTEM_CPU_THRESHOLD: CPU usage {pct}% exceeds the threshold",
    ),
]

# ---------------------------------------------------------------------------- fillers

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SITES = ("nyc", "lon", "fra", "sjc", "sin", "dc1", "dc2", "ams", "tok", "hq", "br12", "par", "syd", "chi", "dal")
NET_ROLES = ("rtr", "sw", "core", "edge", "agg", "leaf", "spine", "fw", "pe", "ce", "tor", "bb", "dist", "access")
SRV_ROLES = ("web", "db", "dns", "dhcp", "bastion", "lb", "k8s-node", "nat", "vpn", "mon", "gw", "ntp")
USERS = (
    "admin",
    "root",
    "ops",
    "netops",
    "jdoe",
    "asmith",
    "backup",
    "ansible",
    "oracle",
    "test",
    "guest",
    "ubnt",
    "pi",
    "support",
    "nagios",
    "svc-monitor",
    "deploy",
    "git",
    "cisco",
    "operator",
    "noc",
    "mkowalski",
    "lchen",
    "rpatel",
    "ftp",
    "postgres",
    "user1",
    "tech",
)
PROCS = (
    "bgpd",
    "zebra",
    "snmpd",
    "java",
    "python3",
    "nginx",
    "haproxy",
    "keepalived",
    "ospfd",
    "bird",
    "dockerd",
    "kubelet",
    "telegraf",
    "rsyslogd",
    "named",
)
CLIENTS = (
    "android-5f2a",
    "iPhone",
    "LAPTOP-8KQ2",
    "printer-3f",
    "ipcam-07",
    "DESKTOP-1A2B3C",
    "raspberrypi",
    "ap-floor2",
    "voip-1123",
    "thermostat",
    "nas01",
)
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
    return r.choice(
        (
            lambda: f"GigabitEthernet{r.randint(0, 2)}/{r.randint(0, 3)}",
            lambda: f"GigabitEthernet{r.randint(1, 4)}/0/{r.randint(1, 48)}",
            lambda: f"TenGigabitEthernet{r.randint(1, 2)}/1/{r.randint(1, 8)}",
            lambda: f"FastEthernet0/{r.randint(1, 24)}",
            lambda: f"Serial0/{r.randint(0, 1)}/{r.randint(0, 3)}",
            lambda: f"Port-channel{r.randint(1, 48)}",
            lambda: f"Vlan{r.randint(2, 4000)}",
        )
    )()


def _ios_if_short(r: random.Random) -> str:
    return r.choice(
        (
            lambda: f"Gi{r.randint(1, 4)}/0/{r.randint(1, 48)}",
            lambda: f"Te{r.randint(1, 2)}/1/{r.randint(1, 8)}",
            lambda: f"Fa0/{r.randint(1, 24)}",
            lambda: f"Gi0/{r.randint(0, 9)}",
        )
    )()


def _nx_if(r: random.Random) -> str:
    if r.random() < 0.8:
        return f"Ethernet{r.randint(1, 8)}/{r.randint(1, 54)}"
    return f"Ethernet{r.randint(101, 104)}/1/{r.randint(1, 48)}"


def _jn_phys(r: random.Random) -> str:
    if r.random() < 0.15:
        return f"ae{r.randint(0, 31)}"
    return f"{r.choice(('ge', 'xe', 'et', 'ge', 'xe'))}-{r.randint(0, 11)}/{r.randint(0, 3)}/{r.randint(0, 47)}"


def _eos_if(r: random.Random) -> str:
    return r.choice(
        (
            lambda: f"Ethernet{r.randint(1, 52)}",
            lambda: f"Ethernet{r.randint(49, 54)}/1",
            lambda: f"Ethernet{r.randint(1, 32)}/{r.randint(1, 4)}",
        )
    )()


def _lnx_if(r: random.Random) -> str:
    return r.choice(
        (
            lambda: f"eth{r.randint(0, 3)}",
            lambda: f"eno{r.randint(1, 4)}",
            lambda: f"ens{r.randint(160, 224)}",
            lambda: f"enp{r.randint(1, 9)}s0f{r.randint(0, 1)}",
            lambda: f"enp{r.randint(1, 9)}s0",
        )
    )()


def _host(r: random.Random) -> str:
    sep = r.choice(("-", "-", "_", ""))
    if r.random() < 0.7:
        name = f"{r.choice(SITES)}{sep}{r.choice(NET_ROLES)}{sep}{r.randint(1, 40):0{r.choice((1, 2))}d}"
    else:
        name = f"{r.choice(SRV_ROLES)}{r.randint(1, 20):02d}{sep}{r.choice(SITES)}"
    return name.upper() if r.random() < 0.15 else name


def _mac_sep(sep: str, group: int, upper: bool = False):
    def fill(r: random.Random) -> str:
        hexes = "".join(f"{o:02x}" for o in _mac_octets(r))
        text = sep.join(hexes[i : i + group] for i in range(0, 12, group))
        return text.upper() if upper else text

    return fill


def _xr_if(r: random.Random) -> str:
    return r.choice(
        (
            lambda: f"GigabitEthernet0/0/0/{r.randint(0, 39)}",
            lambda: f"TenGigE0/{r.randint(0, 7)}/0/{r.randint(0, 23)}",
            lambda: f"HundredGigE0/{r.randint(0, 7)}/0/{r.randint(0, 35)}",
            lambda: f"Bundle-Ether{r.randint(1, 200)}",
        )
    )()


def _hw_if(r: random.Random) -> str:
    return r.choice(
        (
            lambda: f"GigabitEthernet0/0/{r.randint(1, 48)}",
            lambda: f"XGigabitEthernet0/0/{r.randint(1, 24)}",
            lambda: f"10GE1/0/{r.randint(1, 48)}",
            lambda: f"100GE1/0/{r.randint(1, 32)}",
            lambda: f"Eth-Trunk{r.randint(1, 64)}",
        )
    )()


def _cw_if(r: random.Random) -> str:
    return r.choice(
        (
            lambda: f"GigabitEthernet1/0/{r.randint(1, 48)}",
            lambda: f"Ten-GigabitEthernet1/0/{r.randint(49, 52)}",
            lambda: f"HundredGigE1/0/{r.randint(1, 32)}",
            lambda: f"Bridge-Aggregation{r.randint(1, 32)}",
        )
    )()


def _ip6(r: random.Random) -> str:
    return f"2001:db8:{r.randint(0, 0xFFFF):x}:{r.randint(0, 0xFFFF):x}::{r.randint(1, 0xFFFF):x}"


FILLERS = {
    "ip": _ip,
    "ip2": _ip,
    "ip3": _ip,
    "mac": _mac,
    "mac_dot": _mac_dot,
    "ios_if": _ios_if,
    "ios_if_short": _ios_if_short,
    "ios_if_short2": _ios_if_short,
    "nx_if": _nx_if,
    "nx_if2": _nx_if,
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
    "fp": lambda r: "".join(
        r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(43)
    ),
    "serial": lambda r: (
        r.choice(("FOX", "JAE", "SAL", "DCH"))
        + "".join(r.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(8))
    ),
    "epoch": lambda r: f"{r.randint(1704067200, 1767225599)}.{r.randint(0, 9999):04d}",
    "uptime": lambda r: f"{r.randint(100, 9999999)}.{r.randint(0, 999999):06d}",
    "bird_bgp": lambda r: r.choice(("bgp1", "bgp2", "upstream", "transit_a", "ix_peer", "ebgp_v4", "rr1")),
    "bird_ospf": lambda r: r.choice(("ospf1", "ospf_core", "ospf2", "backbone")),
    "hms": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}",
    "dow": lambda r: r.choice(DAYS),
    "mon": lambda r: r.choice(MONTHS),
    "day": lambda r: str(r.randint(1, 28)),
    "year": lambda r: str(r.choice((2024, 2025))),
    # used only by the training-only and holdout vendors' templates
    "ip6": _ip6,
    "mac_dash": _mac_sep("-", 4),
    "mac_hp": _mac_sep("-", 6),
    "mac_upper": _mac_sep(":", 2, upper=True),
    "xr_if": _xr_if,
    "hw_if": _hw_if,
    "hw_if2": _hw_if,
    "cw_if": _cw_if,
    "asa_if": lambda r: r.choice(("outside", "inside", "dmz", "mgmt", "guest", "partner", "failover")),
    "pc_port": lambda r: r.choice(
        (str(r.randint(1, 48)), f"{r.choice('ABCD')}{r.randint(1, 24)}", f"{r.randint(1, 4)}/{r.randint(1, 48)}")
    ),
    "fg_port": lambda r: r.choice(("port", "wan", "internal", "lan", "x")) + str(r.randint(1, 24)),
    "pa_if": lambda r: f"ethernet1/{r.randint(1, 24)}",
    "pa_time": lambda r: (
        f"{r.choice((2024, 2025))}/{r.randint(1, 12):02d}/{r.randint(1, 28):02d} "
        f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"
    ),
    "mt_if": lambda r: r.choice(("ether", "sfp-sfpplus", "wlan", "combo")) + str(r.randint(1, 12)),
    "seqn": lambda r: str(r.randint(0, 99999)),
    "sysid": lambda r: ".".join(f"{r.randint(0, 0xFFFF):04x}" for _ in range(3)),
    "nk_port": lambda r: f"{r.randint(1, 4)}/{r.randint(1, 2)}/{r.choice(('', 'c'))}{r.randint(1, 36)}",
    "ex_port": lambda r: r.choice((str(r.randint(1, 52)), f"{r.randint(1, 8)}:{r.randint(1, 48)}")),
    "os_if": lambda r: f"ethernet1/1/{r.randint(1, 54)}",
    "mac2": _mac,
    "bsd_if": lambda r: r.choice(("igb", "em", "ix", "vtnet", "re", "bce", "lagg")) + str(r.randint(0, 5)),
    "sw_if": lambda r: f"X{r.randint(0, 24)}",
    "sp_if": lambda r: f"Port{r.randint(1, 8)}",
    "f5_if": lambda r: f"{r.randint(1, 2)}.{r.randint(1, 8)}",
    "fi_if": lambda r: f"{r.randint(1, 4)}/{r.randint(1, 2)}/{r.randint(1, 48)}",
    "sb_if": lambda r: f"{r.choice(('gi', 'te', 'fa'))}1/0/{r.randint(1, 52)}",
    "wg_if": lambda r: r.choice(("External", "Trusted", "Optional-1", "eth0", "eth1", "eth3")),
    "swp": lambda r: f"swp{r.randint(1, 54)}",
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
    """A regex that matches every body the template can produce (a slot is any non-empty text)."""
    out, pos = [], 0
    for m in re.finditer(r"\[\[(.*?)\]\]|\{(\w+)\}", template.body):
        out.append(re.escape(template.body[pos : m.start()]))
        if m.group(1) is not None:
            alts = [SLOT.sub(lambda _m: "\0", a) for a in m.group(1).split("|")]
            out.append("(?:" + "|".join(re.escape(a).replace("\0", ".+?") for a in alts) + ")")
        else:
            out.append(".+?")
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
    return (
        f"{r.choice((2024, 2025))}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T"
        f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}{frac}{tz}"
    )


def _hms(r: random.Random) -> str:
    return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"


def _stamp_slash(r: random.Random, order: str = "ymd") -> str:
    """2025/03/07 10:11:12 (ymd), 03/07/2025 10:11:12 (mdy) or 03/07/25 10:11:12 (mdy2)."""
    y, mo, d = r.choice((2024, 2025)), r.randint(1, 12), r.randint(1, 28)
    date = {"ymd": f"{y}/{mo:02d}/{d:02d}", "mdy": f"{mo:02d}/{d:02d}/{y}", "mdy2": f"{mo:02d}/{d:02d}/{y % 100:02d}"}[
        order
    ]
    return f"{date} {_hms(r)}"


def _host_or_address(r: random.Random) -> str:
    """What a collector writes as the sender: a short name, a domain name or the sender's address."""
    x = r.random()
    if x < 0.2:
        return _ip(r)
    if x < 0.4:
        return f"{_host(r).lower()}.{r.choice(('example.net', 'corp.local', 'dc.example.com', 'lan'))}"
    return _host(r)


def _pri(r: random.Random) -> str:
    return f"<{r.choice((13, 14, 134, 163, 165, 166, 187, 188, 189, 190))}>"


def _tagged(t: Template, b: str, r: random.Random, host: str) -> str:
    """A BSD-syslog line with the program tag (``kernel:`` has no PID)."""
    tag = "kernel:" if t.program == "kernel" else f"{t.program}[{r.randint(100, 65000)}]:"
    stamp = _stamp_bsd(r) if r.random() < 0.6 else _stamp_iso(r)
    return f"{stamp} {host} {tag} {b}"


def _plain(t: Template, b: str, r: random.Random, host: str) -> str:
    """Stamp and sender, no program tag (the vendor's own tag is in the message)."""
    return f"{r.choice(('', _pri(r)))}{_stamp_bsd(r) if r.random() < 0.7 else _stamp_iso(r)} {host} {b}"


# Headers of the vendors that only the training split (or only the holdout split) uses.
EXTRA_HEADERS = {
    **{v: _plain for v in ("ciscosb", "omniswitch", "wlc", "watchguard", "zyxel", "bmc")},
    "ubiquiti": _tagged,
    "checkpoint": lambda t, b, r, host: f"{_stamp_bsd(r)} {host} CheckPoint {r.randint(100, 65000)} - [{b}]",
    "esxi": lambda t, b, r, host: f"{_stamp_iso(r)} {host} {t.program}: {b}",
    "bsd": _tagged,
    # BIG-IP writes the level before the program tag.
    "f5": lambda t, b, r, host: (
        f"{_stamp_bsd(r)} {host} {r.choice(('err', 'notice', 'info', 'warning', 'crit'))} "
        f"{t.program}[{r.randint(100, 65000)}]: {b}"
    ),
    "sonicwall": lambda t, b, r, host: (
        f"{r.choice(('', _pri(r)))}id=firewall sn=0017C5{r.getrandbits(24):06X} "
        f'time="{_stamp_iso(r)[:10]} {_hms(r)}" fw={_ip(r)} pri={r.randint(1, 6)} {b}'
    ),
    "sophos": lambda t, b, r, host: (
        f'device="SFW" date={_stamp_iso(r)[:10]} time={_hms(r)} timezone="UTC" '
        f'device_name="XG{r.choice((135, 230, 330, 430))}" device_id=C{r.randint(10**9, 10**10 - 1)} {b}'
    ),
    "meraki": lambda t, b, r, host: (
        f"{_pri(r)}1 {r.randint(1704067200, 1767225599)}.{r.randint(0, 10**9 - 1):09d} {host} {b}"
    ),
    "fastiron": lambda t, b, r, host: f"{r.choice(('', _pri(r)))}{_stamp_bsd(r)} {host} {b}",
    "sonic": lambda t, b, r, host: (
        f"{_stamp_bsd(r)}.{r.randint(0, 999999):06d} {host} "
        f"{r.choice(('NOTICE', 'INFO', 'WARNING', 'ERR'))} {t.program}: {b}"
    ),
    "netgear": lambda t, b, r, host: r.choice(
        (
            lambda: (
                f"{b} {r.choice(('Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'))}, "
                f"{r.choice(('January', 'March', 'June', 'September', 'November'))} "
                f"{r.randint(1, 28):02d},{r.choice((2024, 2025))} {_hms(r)}"
            ),
            lambda: f"{_stamp_bsd(r)} {_ip(r)} {b}",
        )
    )(),
    "iosxr": lambda t, b, r, host: r.choice(
        (
            lambda: (
                f"{r.choice(('RP/0/RSP0/CPU0', 'RP/0/RP0/CPU0', 'LC/0/1/CPU0'))}:{_stamp_bsd(r, True)} UTC: "
                f"{t.program}[{r.randint(100, 65000)}]: {b}"
            ),
            lambda: (
                f"{_stamp_bsd(r)} {host} {r.randint(1, 99999)}: RP/0/RSP0/CPU0:{_stamp_bsd(r, True)} UTC: "
                f"{t.program}[{r.randint(100, 65000)}]: {b}"
            ),
        )
    )(),
    "asa": lambda t, b, r, host: r.choice(
        (
            lambda: f"{_stamp_bsd(r)} {host} : {b}",
            lambda: f"{_pri(r)}{_stamp_bsd(r)} {r.choice((2024, 2025))} {host}: {b}",
            lambda: f"{_stamp_iso(r)} {host} {b}",
        )
    )(),
    "huawei": lambda t, b, r, host: (
        f"{r.choice(MONTHS)} {r.randint(1, 28):2d} {r.choice((2024, 2025))} {_hms(r)}"
        f"{r.choice(('', '+08:00', '-05:00', '+00:00'))} {host.upper()} {b}"
    ),
    "comware": lambda t, b, r, host: r.choice(
        (
            lambda: f"%{_stamp_bsd(r)}:{r.randint(0, 999):03d} {r.choice((2024, 2025))} {host} {b}",
            lambda: f"{_pri(r)}{_stamp_bsd(r)} {r.choice((2024, 2025))} {host} %%10{b}",
        )
    )(),
    "procurve": lambda t, b, r, host: r.choice(
        (
            lambda: f"{_stamp_bsd(r)} {host} {b}",
            lambda: f"{r.choice('IWM')} {_stamp_slash(r, 'mdy2')} {b}",
        )
    )(),
    "fortios": lambda t, b, r, host: (
        f"{r.choice(('', _pri(r)))}date={_stamp_iso(r)[:10]} time={_hms(r)} "
        f'devname="{host}" devid="FG{r.choice(("100F", "60F", "200E", "VM64"))}TK{r.randint(10**8, 10**9 - 1)}" '
        f"eventtime={r.randint(1704067200, 1767225599)}{r.randint(0, 10**9 - 1):09d} "
        f'tz="{r.choice(("+0000", "-0500", "+0100"))}" {b}'
    ),
    "panos": lambda t, b, r, host: (
        f"{_stamp_bsd(r)} {host} "
        f"1,{_stamp_slash(r)},0{r.randint(10**10, 10**11 - 1)},SYSTEM,{b},{r.randint(1000, 10**7)},0x0,0,0,0,0,,{host}"
    ),
    "mikrotik": lambda t, b, r, host: f"{_stamp_bsd(r)} {_host_or_address(r)} {b}",
    "sros": lambda t, b, r, host: r.choice(
        (
            lambda: f"{r.randint(1, 99999)} {_stamp_slash(r)}.{r.randint(0, 99):02d} UTC {b}",
            lambda: f"{_stamp_bsd(r)} {host} TMNX: {r.randint(1, 99999)} {b}",
        )
    )(),
    "exos": lambda t, b, r, host: r.choice(
        (
            lambda: f"{_stamp_bsd(r)} {host} {_stamp_slash(r, 'mdy')}.{r.randint(0, 99):02d} {b}",
            lambda: f"{_pri(r)}{_stamp_bsd(r)} {host} {b}",
        )
    )(),
    "os10": lambda t, b, r, host: r.choice(
        (
            lambda: (
                f"{_pri(r)}1 {_stamp_iso(r)} {host} dn_alm {r.randint(100, 9999)} - - "
                f"Node.1-Unit.1:PRI [event], Dell EMC (OS10) {b}"
            ),
            lambda: (
                f"{_stamp_bsd(r)} {host} dn_alm[{r.randint(100, 9999)}]: Node.1-Unit.1:PRI [event], Dell EMC (OS10) {b}"
            ),
        )
    )(),
}


def generic_header(template: Template, body: str, r: random.Random) -> str:
    """A header as a log collector may rewrite it, whatever the vendor."""
    host, prog = _host_or_address(r), template.program or "-"
    return r.choice(
        (
            lambda: (
                f"{_pri(r)}1 {_stamp_iso(r)} {host} {prog} {r.choice(('-', str(r.randint(100, 65000))))} - - {body}"
            ),
            lambda: f"{_stamp_iso(r)} {host} {body}",
            lambda: f"{_stamp_bsd(r)} {host} {body}",
            lambda: f"{r.randint(1704067200, 1767225599)}.{r.randint(0, 999):03d} {host} {body}",
            lambda: body,
        )
    )()


def header_and_body(template: Template, body: str, r: random.Random) -> str:
    host = _host(r)
    v = template.vendor
    if v in EXTRA_HEADERS:
        return EXTRA_HEADERS[v](template, body, r, host)
    if v == "ios":
        seq = r.randint(1, 999999)
        return r.choice(
            (
                lambda: f"{seq}: {host}: *{_stamp_bsd(r, True)}: {body}",
                lambda: f"{_stamp_bsd(r)} {host} {seq}: {_stamp_bsd(r, True)} UTC: {body}",
                lambda: f"<{r.choice((187, 188, 189, 190))}>{seq}: {_stamp_bsd(r)}: {body}",
                lambda: f"{_stamp_iso(r)} {host} {body}",
            )
        )()
    if v == "nxos":
        return r.choice(
            (
                lambda: f"{r.choice((2024, 2025))} {_stamp_bsd(r)} {host} {body}",
                lambda: f"{_stamp_bsd(r)} {host} : {r.choice((2024, 2025))} {_stamp_bsd(r)} UTC: {body}",
                lambda: f"{_stamp_iso(r)} {host} {body}",
            )
        )()
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
    """`n` records for `split`, balanced over the labels,
    each {"text", "label", "template", "vendor", "body", "header"}."""
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
            generic = split == "train" and r.random() < TRAIN_GENERIC_HEADER
            text = (generic_header if generic else header_and_body)(template, body, r)
            if text in seen:
                continue
            seen.add(text)
            records.append(
                {
                    "text": text,
                    "label": label,
                    "template": template.id,
                    "vendor": vendor,
                    "body": body,
                    "header": "generic" if generic else "vendor",
                }
            )
            got += 1
    r.shuffle(records)
    return records


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps({"text": x["text"], "label": x["label"]}, ensure_ascii=False) + "\n" for x in records)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    for split in SPLITS:
        p.add_argument(f"--{split}", type=int, default=DEFAULT_SIZES[split], help=f"{split} records")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output directory")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    for split, n in ((s, getattr(a, s)) for s in SPLITS):
        recs = generate_split(split, n, a.seed)
        (a.out / f"{split}.jsonl").write_text(to_jsonl(recs), encoding="utf-8")
        print(f"wrote {n} records to {a.out / f'{split}.jsonl'}")


if __name__ == "__main__":
    main()
