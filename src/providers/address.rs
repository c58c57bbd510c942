//! Where a provider call may go: the class of a tenant URL's host (public, loopback, private,
//! link-local, reserved), the operator's policy over those classes, and whether a URL names this
//! deployment itself.
//!
//! Hosts are judged by name only: a Worker has no DNS API, so `llm.example.com` is public here even
//! if its DNS answers `10.0.0.5`. What is caught is every spelling the URL itself carries: IP
//! literals in any form the `url` crate normalises (decimal `2130706433`, octal `0177.0.0.1`, hex
//! `0x7f.1`, short `127.1`, IPv6 with or without IPv4 inside), `localhost` and `*.localhost`,
//! cloud metadata names, and names that only resolve on a private network (one label, `.local`,
//! `.internal`, `.lan`, `.home.arpa`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// The header every outbound call carries, and that keyward refuses on arrival (508): a request
/// with it came from a keyward deployment, so answering it could only feed a loop. Its value says
/// nothing about the deployment.
pub const HOP_HEADER: &str = "x-keyward-hop";
/// The value of [`HOP_HEADER`].
pub const HOP_VALUE: &str = "1";

/// The operator var listing which non-public address classes tenant URLs may use.
pub const POLICY_VAR: &str = "PROVIDER_PRIVATE_ADDRESSES";

/// What a URL's host is, by its spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    /// 127.0.0.0/8, 0.0.0.0/8 (which reaches the local host on Linux), `::1`, `::`, `localhost`
    /// and `*.localhost` (RFC 6761).
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier-grade NAT), fc00::/7, fec0::/10, and names
    /// that resolve only inside a network.
    Private,
    /// 169.254/16 (the cloud metadata address 169.254.169.254 among them), fe80::/10, and the
    /// metadata names `metadata.google.internal` and `metadata.goog`.
    LinkLocal,
    /// Multicast, broadcast and reserved ranges: never a provider, whatever the policy.
    Reserved,
}

impl AddressClass {
    /// The name the policy var and messages use.
    pub fn name(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// Which non-public classes tenant URLs may use (`PROVIDER_PRIVATE_ADDRESSES`). Default: none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    pub loopback: bool,
    pub private: bool,
    pub link_local: bool,
}

impl AddressPolicy {
    /// Every class allowed that this policy can allow (for tests of what the policy does not cover).
    pub const ALL: AddressPolicy = AddressPolicy {
        loopback: true,
        private: true,
        link_local: true,
    };

    /// Parse `loopback,private,link-local` (any subset, any order, spaces and case ignored; empty
    /// or `none` allows none). An unknown entry is an error naming it, so a typo is not silently
    /// read as "allowed" or ignored.
    pub fn parse(raw: &str) -> Result<AddressPolicy, String> {
        let mut p = AddressPolicy::default();
        for entry in raw.split(',').map(|e| e.trim().to_ascii_lowercase()) {
            match entry.as_str() {
                "" | "none" => {}
                "loopback" => p.loopback = true,
                "private" => p.private = true,
                "link-local" | "link_local" | "linklocal" => p.link_local = true,
                other => {
                    return Err(format!(
                        "{POLICY_VAR}: unknown class {:?}; use loopback, private and/or link-local",
                        other.chars().take(40).collect::<String>()
                    ))
                }
            }
        }
        Ok(p)
    }

    pub fn allows(&self, class: AddressClass) -> bool {
        match class {
            AddressClass::Public => true,
            AddressClass::Loopback => self.loopback,
            AddressClass::Private => self.private,
            AddressClass::LinkLocal => self.link_local,
            AddressClass::Reserved => false,
        }
    }
}

/// A domain name as compared: lowercase (the `url` crate already lowercases and IDNA-maps it),
/// without trailing dots (`localhost.` is `localhost`).
fn plain_name(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

/// The host of a URL as an IP when it is one, also when spelled with a trailing dot.
fn host_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(a) => Some(IpAddr::V4(a)),
        Host::Ipv6(a) => Some(IpAddr::V6(a)),
        Host::Domain(d) => plain_name(d).parse().ok(),
    }
}

fn classify_v4(a: Ipv4Addr) -> AddressClass {
    let [o1, o2, o3, _] = a.octets();
    match (o1, o2, o3) {
        (0 | 127, _, _) => AddressClass::Loopback,
        (169, 254, _) => AddressClass::LinkLocal,
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, 16..=31, _) | (100, 64..=127, _) => AddressClass::Private,
        // IETF protocol assignments (192.0.0/24), benchmarking (198.18/15), multicast (224/4),
        // reserved and broadcast (240/4).
        (192, 0, 0) | (198, 18..=19, _) | (224..=255, _, _) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn classify_v6(a: Ipv6Addr) -> AddressClass {
    let s = a.segments();
    if a.is_loopback() || a.is_unspecified() {
        return AddressClass::Loopback;
    }
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d, deprecated), NAT64
    // (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::): each reaches the IPv4 address it carries.
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let embedded = match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    };
    if let Some(inner) = embedded {
        return classify_v4(inner);
    }
    match s[0] {
        0xfe80..=0xfebf => AddressClass::LinkLocal,
        0xfc00..=0xfdff | 0xfec0..=0xfeff => AddressClass::Private,
        0xff00..=0xffff => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

/// Names that resolve only inside a network (RFC 6762 `.local`, RFC 8375 `.home.arpa`, ICANN's
/// reserved `.internal`, the customary `.lan`), and one-label names, which only a resolver's search
/// list or a container network can answer.
const PRIVATE_SUFFIXES: &[&str] = &[".local", ".internal", ".lan", ".home.arpa"];
/// Names of cloud metadata services (they answer at 169.254.169.254).
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata.goog"];

fn classify_name(name: &str) -> AddressClass {
    if name == "localhost" || name.ends_with(".localhost") {
        AddressClass::Loopback
    } else if METADATA_NAMES.contains(&name) {
        AddressClass::LinkLocal
    } else if !name.contains('.') || PRIVATE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// The class of a URL's host, by its spelling.
pub fn classify(url: &Url) -> AddressClass {
    match host_ip(url) {
        Some(IpAddr::V4(a)) => classify_v4(a),
        Some(IpAddr::V6(a)) => classify_v6(a),
        None => match url.host() {
            Some(Host::Domain(d)) => classify_name(&plain_name(d)),
            _ => AddressClass::Reserved,
        },
    }
}

/// A host as compared for "is this the deployment": every loopback spelling is one key (the port
/// then tells services apart), an IP is itself, a name is its plain form.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostKey {
    Loopback,
    Ip(IpAddr),
    Name(String),
}

fn host_key(url: &Url) -> Option<HostKey> {
    if classify(url) == AddressClass::Loopback {
        return Some(HostKey::Loopback);
    }
    match host_ip(url) {
        Some(ip) => Some(HostKey::Ip(ip)),
        None => match url.host()? {
            Host::Domain(d) => Some(HostKey::Name(plain_name(d))),
            _ => None,
        },
    }
}

/// One place the deployment answers at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnHost {
    key: HostKey,
    /// `*.name`: the name's subdomains (not the name itself).
    subdomains: bool,
    /// `None`: every port.
    port: Option<u16>,
}

impl OwnHost {
    fn matches(&self, key: &HostKey, port: Option<u16>) -> bool {
        let host = match (&self.key, key) {
            (HostKey::Name(own), HostKey::Name(n)) if self.subdomains => {
                n.len() > own.len() + 1 && n.ends_with(own.as_str()) && {
                    n.as_bytes()[n.len() - own.len() - 1] == b'.'
                }
            }
            (own, k) => own == k,
        };
        host && self.port.is_none_or(|p| Some(p) == port)
    }
}

/// The operator's list of the deployment's public hostnames (`KEYWARD_PUBLIC_HOSTS`): `host`,
/// `host:port` or `*.domain`, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicHosts(Vec<OwnHost>);

impl PublicHosts {
    /// Parse the list; an entry that is not a host is an error naming it.
    pub fn parse(raw: &str) -> Result<PublicHosts, String> {
        let mut out = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (subdomains, rest) = match entry.strip_prefix("*.") {
                Some(r) => (true, r),
                None => (false, entry),
            };
            let bad = || {
                format!(
                    "KEYWARD_PUBLIC_HOSTS: {:?} is not a host, host:port or *.domain",
                    entry.chars().take(80).collect::<String>()
                )
            };
            if rest.contains(['/', '@', '?', '#']) {
                return Err(bad());
            }
            let url = Url::parse(&format!("http://{rest}/")).map_err(|_| bad())?;
            let key = host_key(&url).ok_or_else(bad)?;
            if subdomains && !matches!(key, HostKey::Name(_)) {
                return Err(bad());
            }
            out.push(OwnHost {
                key,
                subdomains,
                port: url.port(),
            });
        }
        Ok(PublicHosts(out))
    }
}

/// Where this deployment answers, as far as it can know without DNS: the host the request was sent
/// to (its `Host` header and the URL the runtime received) and the operator's public hostnames.
/// On loopback the port tells keyward apart from other local services; a public name is the
/// deployment on every port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnHosts(Vec<OwnHost>);

impl OwnHosts {
    /// From the request's `Host` header and received origin (`scheme://host[:port]`), plus `public`.
    pub fn new(host_header: Option<&str>, origin: Option<&str>, public: &PublicHosts) -> OwnHosts {
        let mut out = public.0.clone();
        let origin = origin.and_then(|o| Url::parse(o).ok());
        let scheme = origin.as_ref().map_or("http", |u| u.scheme()).to_owned();
        let from_host = host_header
            .filter(|h| !h.contains(['/', '@', '?', '#']))
            .and_then(|h| Url::parse(&format!("{scheme}://{}/", h.trim())).ok());
        for url in origin.iter().chain(from_host.iter()) {
            let Some(key) = host_key(url) else { continue };
            let port = match key {
                HostKey::Loopback => url.port_or_known_default(),
                _ => None,
            };
            out.push(OwnHost {
                key,
                subdomains: false,
                port,
            });
        }
        OwnHosts(out)
    }

    /// Whether `url` leads to this deployment.
    pub fn contains(&self, url: &Url) -> bool {
        let Some(key) = host_key(url) else {
            return false;
        };
        let port = url.port_or_known_default();
        self.0.iter().any(|h| h.matches(&key, port))
    }
}

/// `host[:port]` of a URL, for messages.
pub fn shown_host(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// Why a call to `url` is not allowed under `policy`, if it is not (the self check is separate:
/// it needs the request).
pub fn refusal(url: &Url, policy: &AddressPolicy) -> Option<String> {
    let class = classify(url);
    if policy.allows(class) {
        return None;
    }
    let host = shown_host(url);
    Some(match class {
        AddressClass::Reserved => {
            format!("{host} is a multicast, broadcast or reserved address, never a provider")
        }
        c => format!(
            "{host} is a {} address, which this deployment does not allow in provider URLs \
             (the operator allows it by adding {} to {POLICY_VAR})",
            c.name(),
            c.name()
        ),
    })
}

/// Check a tenant-given URL when it is saved: not the deployment itself, and of a class the policy
/// allows. `Err` is the message for a 400 on `field` (the caller prefixes the field name).
pub fn check_destination(raw: &str, policy: &AddressPolicy, own: &OwnHosts) -> Result<(), String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    if own.contains(&url) {
        return Err(format!(
            "{} is this keyward deployment itself; a provider URL must lead to the provider, \
             never back to keyward",
            shown_host(&url)
        ));
    }
    match refusal(&url, policy) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(raw: &str) -> AddressClass {
        classify(&Url::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}")))
    }

    #[test]
    fn every_spelling_of_a_loopback_address_is_loopback() {
        for raw in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://127.0.0.1./",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://017700000001/",
            "http://127.255.255.254/",
            "http://0.0.0.0/",
            "http://0/",
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://%6c%6fcalhost/",
            "http://api.localhost/",
            "http://a.b.LocalHost/",
        ] {
            assert_eq!(class(raw), AddressClass::Loopback, "{raw}");
        }
    }

    #[test]
    fn private_link_local_and_reserved_ranges_are_told_apart() {
        for (raw, want) in [
            ("http://10.0.0.1/", AddressClass::Private),
            ("http://10.255.255.255/", AddressClass::Private),
            ("http://172.16.0.1/", AddressClass::Private),
            ("http://172.31.255.255/", AddressClass::Private),
            ("http://192.168.1.1/", AddressClass::Private),
            ("http://100.64.0.1/", AddressClass::Private),
            ("http://100.127.255.255/", AddressClass::Private),
            ("http://0xa000001/", AddressClass::Private),
            ("http://[fc00::1]/", AddressClass::Private),
            ("http://[fd12:3456::1]/", AddressClass::Private),
            ("http://[::ffff:10.1.2.3]/", AddressClass::Private),
            ("http://ollama:11434/", AddressClass::Private),
            ("http://gpu-box.local/", AddressClass::Private),
            ("http://llm.corp.internal/", AddressClass::Private),
            ("http://nas.home.arpa/", AddressClass::Private),
            ("http://169.254.169.254/", AddressClass::LinkLocal),
            ("http://169.254.0.1/", AddressClass::LinkLocal),
            ("http://[fe80::1]/", AddressClass::LinkLocal),
            ("http://[febf::1]/", AddressClass::LinkLocal),
            ("http://[::ffff:169.254.169.254]/", AddressClass::LinkLocal),
            ("http://metadata.google.internal/", AddressClass::LinkLocal),
            ("http://METADATA.GOOGLE.INTERNAL./", AddressClass::LinkLocal),
            ("http://224.0.0.1/", AddressClass::Reserved),
            ("http://255.255.255.255/", AddressClass::Reserved),
            ("http://240.0.0.1/", AddressClass::Reserved),
            ("http://[ff02::1]/", AddressClass::Reserved),
            ("https://api.openai.com/v1", AddressClass::Public),
            ("http://8.8.8.8/", AddressClass::Public),
            ("http://172.32.0.1/", AddressClass::Public),
            ("http://100.128.0.1/", AddressClass::Public),
            ("http://[2606:4700::1111]/", AddressClass::Public),
            ("http://[2002:0808:0808::]/", AddressClass::Public),
            ("http://localhost.example.com/", AddressClass::Public),
        ] {
            assert_eq!(class(raw), want, "{raw}");
        }
    }

    #[test]
    fn the_policy_allows_exactly_the_classes_it_lists() {
        let none = AddressPolicy::parse("").unwrap();
        assert_eq!(none, AddressPolicy::default());
        assert_eq!(AddressPolicy::parse("none").unwrap(), none);
        let lo = AddressPolicy::parse("loopback").unwrap();
        assert!(lo.allows(AddressClass::Loopback) && !lo.allows(AddressClass::Private));
        let all = AddressPolicy::parse(" Loopback , private,link-local ").unwrap();
        assert_eq!(all, AddressPolicy::ALL);
        assert!(
            !all.allows(AddressClass::Reserved),
            "reserved is never allowed"
        );
        let e = AddressPolicy::parse("loopback,everything").unwrap_err();
        assert!(e.contains("\"everything\""), "{e}");
    }

    fn own(host: Option<&str>, origin: Option<&str>, public: &str) -> OwnHosts {
        OwnHosts::new(host, origin, &PublicHosts::parse(public).unwrap())
    }

    fn is_self(o: &OwnHosts, raw: &str) -> bool {
        o.contains(&Url::parse(raw).unwrap())
    }

    #[test]
    fn on_loopback_every_spelling_with_the_same_port_is_the_deployment() {
        let o = own(Some("127.0.0.1:8787"), Some("http://127.0.0.1:8787"), "");
        for raw in [
            "http://127.0.0.1:8787/v1",
            "http://localhost:8787/v1",
            "http://LOCALHOST.:8787",
            "http://[::1]:8787/",
            "http://[::ffff:127.0.0.1]:8787/",
            "http://2130706433:8787/",
            "http://127.0.0.2:8787/",
            "https://127.0.0.1:8787/",
            "http://0.0.0.0:8787/",
        ] {
            assert!(is_self(&o, raw), "{raw}");
        }
        for raw in [
            "http://127.0.0.1:8788/v1",
            "http://127.0.0.1/",
            "http://10.0.0.1:8787/",
        ] {
            assert!(!is_self(&o, raw), "{raw}");
        }
        // Default ports count as given.
        let o = own(Some("localhost"), Some("http://localhost"), "");
        assert!(is_self(&o, "http://127.0.0.1:80/"));
        assert!(!is_self(&o, "https://127.0.0.1/"));
    }

    #[test]
    fn a_public_name_is_the_deployment_on_every_port_and_spelling() {
        let o = own(
            Some("Keyward.Example.com"),
            Some("https://keyward.example.com"),
            "",
        );
        for raw in [
            "https://keyward.example.com/v1",
            "http://KEYWARD.example.com.:8080/v1",
            "https://keyward.example.com:443",
        ] {
            assert!(is_self(&o, raw), "{raw}");
        }
        assert!(!is_self(&o, "https://api.example.com/v1"));
        assert!(!is_self(&o, "https://keyward.example.com.evil.net/"));
    }

    #[test]
    fn the_operators_public_hosts_count_as_the_deployment() {
        let o = own(
            Some("keyward.workers.dev"),
            None,
            "ai.example.com, *.gw.example.net ,edge.example.org:8443",
        );
        for raw in [
            "https://ai.example.com/v1",
            "https://eu.gw.example.net/v1",
            "https://a.b.gw.example.net/",
            "https://edge.example.org:8443/",
            "https://keyward.workers.dev/v1",
        ] {
            assert!(is_self(&o, raw), "{raw}");
        }
        for raw in [
            "https://gw.example.net/",
            "https://xgw.example.net/",
            "https://edge.example.org/",
        ] {
            assert!(!is_self(&o, raw), "{raw}");
        }
        for bad in ["http://x/", "a b", "*.127.0.0.1", "u@h"] {
            assert!(PublicHosts::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations_are_refused_naming_why() {
        let o = own(Some("127.0.0.1:8787"), None, "");
        let none = AddressPolicy::default();
        let lo = AddressPolicy::parse("loopback").unwrap();
        let e = check_destination("http://localhost:8787/v1", &AddressPolicy::ALL, &o).unwrap_err();
        assert!(e.contains("this keyward deployment itself"), "{e}");
        let e = check_destination("http://127.0.0.1:9/v1", &none, &o).unwrap_err();
        assert!(e.contains("127.0.0.1:9 is a loopback address"), "{e}");
        assert!(e.contains("PROVIDER_PRIVATE_ADDRESSES"), "{e}");
        assert_eq!(check_destination("http://127.0.0.1:9/v1", &lo, &o), Ok(()));
        let e = check_destination("http://169.254.169.254/", &lo, &o).unwrap_err();
        assert!(e.contains("link-local"), "{e}");
        let e = check_destination("http://239.1.1.1/", &AddressPolicy::ALL, &o).unwrap_err();
        assert!(e.contains("reserved"), "{e}");
        assert_eq!(
            check_destination("https://api.openai.com/v1", &none, &o),
            Ok(())
        );
    }
}
