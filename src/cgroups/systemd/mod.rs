//! The systemd driver: pod cgroups are transient slices and container cgroups transient
//! scopes, which systemd's manager creates and removes when asked over D-Bus.
//!
//! `unit` maps cgroup paths to units, `properties` builds what a unit is started with, and
//! `bus` talks to systemd. The cgroup manager then writes the same interface files the
//! cgroupfs driver writes (as runc does), so limits hold on v1 hierarchies systemd does not
//! manage and for settings systemd has no property for.

mod bus;
mod properties;
mod unit;

pub(crate) use bus::SystemdBus;
pub(crate) use properties::{Request, build as build_properties};
pub(crate) use unit::{Unit, UnitKind};

/// The system bus, where systemd's manager listens, when neither the config nor
/// `DBUS_SYSTEM_BUS_ADDRESS` names another.
pub const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";
