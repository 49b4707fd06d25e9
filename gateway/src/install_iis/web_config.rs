//! The application's web.config: every request goes to the ISAPI loader, and IIS keeps its
//! hands off the requests and the app's answers (each choice is explained in the file).

use crate::config::Bitness;

/// IIS's own body limit is 30,000,000 bytes (413.1, before the DLL sees the request); this is
/// the library's `max-body-size` default, which then applies.
const MAX_CONTENT_LENGTH: u64 = crate::config::defaults::MAX_BODY_SIZE;

pub(super) fn render(dll: &str, bitness: Bitness) -> String {
    let pre = match bitness {
        Bitness::Bits64 => "bitness64",
        Bitness::Bits32 => "bitness32",
    };
    let dll = attr(dll);
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<!-- Written by wsgi-gateway install-iis: every request to this application goes to
     wsgi_gateway_isapi.dll, which loads the Python and the wsgi-gateway core named in
     wsgi-gateway.toml beside it; the core runs the app named there. -->
<configuration>
  <system.webServer>
    <handlers>
      <!-- Handlers added here come before the inherited ones (StaticFile included), and
           path="*" with resourceType="Unspecified" matches every URL, existing file or not:
           no file of this directory is ever served by IIS itself. -->
      <remove name="wsgi-gateway" />
      <add name="wsgi-gateway" path="*" verb="*" modules="IsapiModule" scriptProcessor="{dll}" resourceType="Unspecified" requireAccess="Execute" preCondition="{pre}" />
    </handlers>
    <!-- PassThrough: the app's own 4xx/5xx pages reach the client; IIS's default (Auto) may
         replace them with its error pages. -->
    <httpErrors existingResponse="PassThrough" />
    <security>
      <!-- allowDoubleEscaping: otherwise IIS answers 404.11 to any URL containing '+' or an
           escaped '%' (%25), both common in repository file names; the app gets the raw URL
           (%2F included) and decodes it itself. -->
      <requestFiltering allowDoubleEscaping="true">
        <!-- IIS's own limit is 30000000 bytes (413.1); the library's max-body-size applies. -->
        <requestLimits maxAllowedContentLength="{MAX_CONTENT_LENGTH}" />
        <!-- Every URL must reach the app: a repository browser serves paths such as
             src/app.config, Program.cs, bin/ or App_Data/, which the server's inherited lists
             (ASP.NET's) answer with 404.7 (denied extension) or 404.8 (hidden segment). The
             lists only guard files IIS would serve from this directory, and the handler above
             serves none, so both are cleared. web.config is not kept hidden either, for the
             same reason: /web.config reaches the app, never this file, while a repository's
             own web.config must stay browsable. -->
        <fileExtensions allowUnlisted="true">
          <clear />
        </fileExtensions>
        <hiddenSegments>
          <clear />
        </hiddenSegments>
      </requestFiltering>
    </security>
  </system.webServer>
</configuration>
"#
    )
}

/// Text for a double-quoted XML attribute.
fn attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_are_escaped() {
        assert_eq!(
            attr(r#"C:\A & B\<x>"'"#),
            r"C:\A &amp; B\&lt;x&gt;&quot;&apos;"
        );
        let xml = render(r"C:\Apps & Co\wsgi_gateway_isapi.dll", Bitness::Bits32);
        assert!(xml.contains(r#"scriptProcessor="C:\Apps &amp; Co\wsgi_gateway_isapi.dll""#));
        assert!(xml.contains(r#"preCondition="bitness32""#));
    }
}
