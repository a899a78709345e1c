"""A synthetic Color Factory export of N channels (groups of four: a master with three slaves, every
section filled), for the importer's benchmark and tests."""

from __future__ import annotations


def big_export(channels: int = 256, purges: int = 16) -> str:
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           '<ColorFactoryConfiguration version="8.0" source="synthetic">',
           '  <GlobalFolders baseImageFolder="D:\\CF" errorFolder="D:\\CF\\ERROR" unknownFolder="D:\\CF\\UNKNOWN"/>',
           '  <ProcessEnvironment maxProcesses="9"/>', "  <ProcessChannels>"]
    for g in range(0, channels, 4):
        out.append(f'    <ChannelGroup name="Group {g // 4}">')
        for i in range(g, min(g + 4, channels)):
            master = f' masterChannel="{g + 1}"' if i != g else ""
            inp = "" if master else (
                f'<InputFolder path="D:\\CF\\G{g}\\In" includeSubfolders="true" waitUntilFileStopsGrowingSec="5" '
                f'extractZip="true" copyInputFileTo="D:\\CF\\G{g}\\Originals"/>')
            out.append(f'      <Channel id="{i + 1}" name="Channel {i + 1} web" enabled="true" priority="High"{master}>')
            out.append(f"        {inp}")
            out.append(f'        <OutputFolder path="D:\\CF\\G{g}\\Out{i}"/>')
            out.append('        <OutputFileFormat format="JPEGWeb" jpegQuality="High"/>')
            out.append('        <InputFileFormats rgb="Normal" cmyk="Normal" grayscale="NoPixelProcessing" pdf="Copy"/>')
            out.append('        <ErrorHandling minFileSizeBytes="1024"/>')
            out.append('        <ColorManagement rgb="ConvertToRGB" cmyk="ConvertToRGB" outputProfile="sRGB" '
                       'embedOutputProfile="true"/>')
            out.append('        <ImageSize mode="MaxPixels" width="2048" height="2048"/>')
            out.append('        <Sharpening filter="UnsharpMask" amount="80" radius="0.8" threshold="2"/>')
            out.append('        <Metadata saveMetadataWithOutputFile="true"><GeneralMetadataMacro>')
            for f in (116, 110, 25, 40, 5):
                out.append(f'          <Field id="{f}" action="Replace" content="v{f} %%INSDATE">'
                           f'<Condition field="{f}" operator="IsEmpty"/></Field>')
            out.append("        </GeneralMetadataMacro></Metadata>")
            out.append('        <AutoRouting><Routing type="Metadata" field="15" addUnlistedValues="true">'
                       '<Map value="SPO" folder="Sport"/><Map value="POL" folder="Politics"/></Routing>'
                       '<Routing type="YearMonthDay" dateSource="File"/></AutoRouting>')
            out.append('        <FileNameOptions maxLength="64" mapMacCharsToUnderscore="true" counterDigits="3">'
                       '<CharacterMap><Map code="32" replacement="_"/></CharacterMap></FileNameOptions>')
            out.append("      </Channel>")
        out.append("    </ChannelGroup>")
    out.append("  </ProcessChannels>")
    out.append("  <PurgingChannels>")
    for p in range(purges):
        out.append(f'    <PurgingChannel name="Purge {p}" folder="D:\\CF\\G{p * 4}\\Originals" includeSubfolders="true" '
                   f'maxAgeDays="30" action="Delete"><RunSchedule mode="Daily" hour="3"/>'
                   f'<NameFilters patterns="*.jpg *.tif"/></PurgingChannel>')
    out += ["  </PurgingChannels>", "</ColorFactoryConfiguration>"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(big_export(int(sys.argv[1]) if len(sys.argv) > 1 else 256))
