// What the real opencsv reads from each file named on the command line, as the provider's
// server reads an upload: new CSVReader(new InputStreamReader(bytes, UTF-8)).readAll().
// One JSON line per file: {"records": [[field, ...], ...]} or {"error": class, "line": n,
// "message": text}. The first line gives the jar's version. Run with the source launcher:
//   java -cp opencsv.jar:commons-lang3.jar:... Records.java a.csv b.csv
import com.opencsv.CSVReader;
import com.opencsv.exceptions.CsvMalformedLineException;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Properties;

public class Records {
    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(System.out, false, "US-ASCII");
        Properties pom = new Properties();
        try (InputStream in = CSVReader.class.getResourceAsStream("/META-INF/maven/com.opencsv/opencsv/pom.properties")) {
            if (in != null) {
                pom.load(in);
            }
        }
        out.println("{\"version\": " + quoted(pom.getProperty("version")) + "}");
        for (String name : args) {
            StringBuilder line = new StringBuilder();
            try (CSVReader reader = new CSVReader(new InputStreamReader(new FileInputStream(name), StandardCharsets.UTF_8))) {
                List<String[]> records = reader.readAll();
                line.append("{\"records\": [");
                for (int r = 0; r < records.size(); r++) {
                    line.append(r == 0 ? "[" : ", [");
                    String[] fields = records.get(r);
                    for (int f = 0; f < fields.length; f++) {
                        line.append(f == 0 ? "" : ", ").append(quoted(fields[f]));
                    }
                    line.append("]");
                }
                line.append("]}");
            } catch (CsvMalformedLineException e) {
                line.setLength(0);
                line.append("{\"error\": ").append(quoted(e.getClass().getSimpleName()))
                    .append(", \"line\": ").append(e.getLineNumber())
                    .append(", \"message\": ").append(quoted(e.getMessage())).append("}");
            } catch (Exception e) {
                line.setLength(0);
                line.append("{\"error\": ").append(quoted(e.getClass().getSimpleName()))
                    .append(", \"line\": null, \"message\": ").append(quoted(String.valueOf(e.getMessage()))).append("}");
            }
            out.println(line);
        }
        out.flush();
    }

    // JSON with every char outside printable ASCII as \\uXXXX, so stdout's charset never matters.
    static String quoted(String text) {
        if (text == null) {
            return "null";
        }
        StringBuilder json = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            if (c == '"' || c == '\\') {
                json.append('\\').append(c);
            } else if (c < 0x20 || c > 0x7e) {
                json.append(String.format("\\u%04x", (int) c));
            } else {
                json.append(c);
            }
        }
        return json.append('"').toString();
    }
}
