// Reads a ZIP as the provider's server does, with java.util.zip.ZipInputStream from its first
// byte, and prints each entry's name and the bytes it inflated to, one a line.
// Used by tests/e2e/test_java_zip.py; a ZipException ends it with its message on stderr.
import java.io.BufferedInputStream;
import java.io.FileInputStream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;

public class ReadZip {
    public static void main(String[] args) throws Exception {
        FileInputStream file = new FileInputStream(args[0]);
        try (ZipInputStream in = new ZipInputStream(new BufferedInputStream(file, 1 << 20))) {
            byte[] buffer = new byte[1 << 20];
            ZipEntry entry;
            while ((entry = in.getNextEntry()) != null) {
                long size = 0;
                int read;
                while ((read = in.read(buffer)) > 0) {
                    size += read;
                }
                System.out.println(entry.getName() + " " + size);
            }
        }
    }
}
