//! The AppConfig specfile (`managedAppConfiguration`): the schema EMMs such
//! as Workspace ONE, Ivanti and Jamf import to build their console form. It
//! follows the community XSD: one `dict` of typed keys with defaults and
//! constraints (the user identity defaults to the EMM's `emailAddress` user
//! variable), then a `presentation` with an English and a German label,
//! description and options for every field, grouped like [`Group`].

use crate::Error;
use crate::model::{BundleId, CONFIG_VERSION, Group, KEYS, KeySpec, Kind, Lang, Text};
use crate::xml::Xml;

/// The specfile for the app `bundle_id`.
pub fn specfile(bundle_id: &BundleId) -> Result<String, Error> {
    let mut x = Xml::new()?;
    x.start("managedAppConfiguration", &[])?;
    x.text("version", &[], &CONFIG_VERSION.to_string())?;
    x.text("bundleId", &[], bundle_id.as_str())?;
    x.start("dict", &[])?;
    for spec in KEYS {
        key(&mut x, spec)?;
    }
    x.end("dict")?;
    x.start("presentation", &[("defaultLocale", Lang::En.code())])?;
    for group in Group::ALL {
        x.start("fieldGroup", &[])?;
        languages(&mut x, "name", group.title())?;
        for spec in KEYS.iter().filter(|s| s.group == group) {
            field(&mut x, spec)?;
        }
        x.end("fieldGroup")?;
    }
    x.end("presentation")?;
    x.end("managedAppConfiguration")?;
    x.finish()
}

fn key(x: &mut Xml, spec: &KeySpec) -> Result<(), Error> {
    let name = [("keyName", spec.key)];
    let nullable = if spec.required { "false" } else { "true" };
    match spec.kind {
        Kind::Bool { default } => {
            x.start("boolean", &name)?;
            default_values(x, &[&default.to_string()])?;
            x.empty("constraint", &[("nullable", "false")])?;
            x.end("boolean")
        }
        Kind::Integer { default, min, max } => {
            x.start("integer", &name)?;
            default_values(x, &[&default.to_string()])?;
            let (min, max) = (min.to_string(), max.to_string());
            x.empty(
                "constraint",
                &[("min", &min), ("max", &max), ("nullable", "false")],
            )?;
            x.end("integer")
        }
        Kind::String {
            min_chars,
            max_chars,
            ..
        } => {
            x.start("string", &name)?;
            if let Some(variable) = spec.emm_variable {
                x.start("defaultValue", &[])?;
                x.empty("userVariable", &[("value", variable.appconfig_name())])?;
                x.end("defaultValue")?;
            }
            let (min, max) = (min_chars.to_string(), max_chars.to_string());
            x.empty(
                "constraint",
                &[("min", &min), ("max", &max), ("nullable", nullable)],
            )?;
            x.end("string")
        }
        Kind::Choice { default, options } => {
            x.start("string", &name)?;
            default_values(x, &[default])?;
            allowed(x, &options.iter().map(|o| o.value).collect::<Vec<_>>(), &[])?;
            x.end("string")
        }
        Kind::MultiSelect { default, options } => {
            x.start("stringArray", &name)?;
            default_values(x, default)?;
            let max = options.len().to_string();
            allowed(
                x,
                &options.iter().map(|o| o.value).collect::<Vec<_>>(),
                &[("min", "0"), ("max", &max)],
            )?;
            x.end("stringArray")
        }
        Kind::Hidden { value } => {
            x.start("string", &name)?;
            default_values(x, &[value])?;
            allowed(x, &[value], &[])?;
            x.end("string")
        }
    }
}

fn default_values(x: &mut Xml, values: &[&str]) -> Result<(), Error> {
    x.start("defaultValue", &[])?;
    for value in values {
        x.text("value", &[], value)?;
    }
    x.end("defaultValue")
}

fn allowed(x: &mut Xml, values: &[&str], attrs: &[(&str, &str)]) -> Result<(), Error> {
    let mut attrs = attrs.to_vec();
    attrs.push(("nullable", "false"));
    x.start("constraint", &attrs)?;
    x.start("values", &[])?;
    for value in values {
        x.text("value", &[], value)?;
    }
    x.end("values")?;
    x.end("constraint")
}

fn field(x: &mut Xml, spec: &KeySpec) -> Result<(), Error> {
    let (kind, options) = match spec.kind {
        Kind::Bool { .. } => ("checkbox", None),
        Kind::Integer { .. } | Kind::String { .. } => ("input", None),
        Kind::Choice { options, .. } => ("select", Some(options)),
        Kind::MultiSelect { options, .. } => ("multiselect", Some(options)),
        Kind::Hidden { .. } => ("hidden", None),
    };
    x.start("field", &[("keyName", spec.key), ("type", kind)])?;
    languages(x, "label", spec.title)?;
    languages(x, "description", spec.description)?;
    if let Some(options) = options {
        x.start("options", &[])?;
        for option in options {
            x.start("option", &[("value", option.value)])?;
            for lang in Lang::ALL {
                x.text(
                    "language",
                    &[("value", lang.code())],
                    option.label.get(lang),
                )?;
            }
            x.end("option")?;
        }
        x.end("options")?;
    }
    x.end("field")
}

fn languages(x: &mut Xml, element: &str, text: Text) -> Result<(), Error> {
    x.start(element, &[])?;
    for lang in Lang::ALL {
        x.text("language", &[("value", lang.code())], text.get(lang))?;
    }
    x.end(element)
}
