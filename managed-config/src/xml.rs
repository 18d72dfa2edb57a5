//! A thin layer over quick-xml's writer for the XML encoders: indented output
//! with an XML declaration, attributes and text escaped by quick-xml.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use crate::Error;

pub(crate) struct Xml {
    writer: Writer<Vec<u8>>,
}

fn encode_error(e: std::io::Error) -> Error {
    Error::Encode {
        format: "xml",
        detail: e.to_string(),
    }
}

impl Xml {
    pub(crate) fn new() -> Result<Self, Error> {
        let mut writer = Writer::new_with_indent(Vec::new(), b' ', 4);
        writer
            .write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
            .map_err(encode_error)?;
        Ok(Xml { writer })
    }

    fn tag<'a>(name: &'a str, attrs: &[(&'a str, &'a str)]) -> BytesStart<'a> {
        let mut tag = BytesStart::new(name);
        for attr in attrs {
            tag.push_attribute(*attr);
        }
        tag
    }

    pub(crate) fn start(&mut self, name: &str, attrs: &[(&str, &str)]) -> Result<(), Error> {
        self.writer
            .write_event(Event::Start(Self::tag(name, attrs)))
            .map_err(encode_error)
    }

    pub(crate) fn end(&mut self, name: &str) -> Result<(), Error> {
        self.writer
            .write_event(Event::End(BytesEnd::new(name)))
            .map_err(encode_error)
    }

    pub(crate) fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> Result<(), Error> {
        self.writer
            .write_event(Event::Empty(Self::tag(name, attrs)))
            .map_err(encode_error)
    }

    /// `<name attrs>text</name>` on one line. Only `<`, `>` and `&` are
    /// escaped in text, which keeps apostrophes readable in resources.
    pub(crate) fn text(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        text: &str,
    ) -> Result<(), Error> {
        self.writer
            .create_element(name)
            .with_attributes(attrs.iter().copied())
            .write_text_content(BytesText::from_escaped(quick_xml::escape::partial_escape(
                text,
            )))
            .map(|_| ())
            .map_err(encode_error)
    }

    pub(crate) fn finish(self) -> Result<String, Error> {
        let mut bytes = self.writer.into_inner();
        bytes.push(b'\n');
        String::from_utf8(bytes).map_err(|e| Error::Encode {
            format: "xml",
            detail: e.to_string(),
        })
    }
}
