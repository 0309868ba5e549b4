package weir.bench;

import java.lang.management.ManagementFactory;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.RestOptions;
import org.apache.flink.runtime.jobgraph.JobGraph;
import org.apache.flink.runtime.minicluster.MiniCluster;
import org.apache.flink.runtime.minicluster.MiniClusterConfiguration;
import org.apache.flink.runtime.minicluster.RpcServiceSharing;

/**
 * Runs a job graph on a local MiniCluster in this JVM, configured as Flink's local executor
 * configures one, but started before the measurement: the job is measured from its submission
 * to its result, leaving out the MiniCluster's start-up and shutdown (as weir's local runner
 * leaves out its own set-up). The totals with them are kept too, for INFO lines.
 */
final class MeasuredRun {
    /** The job's result. */
    final JobExecutionResult result;
    /** Wall-clock and process CPU seconds from submission to result. */
    final double seconds;
    final double cpuSeconds;
    /** Wall-clock and CPU seconds including the MiniCluster's start and shutdown. */
    final double totalSeconds;
    final double totalCpuSeconds;

    private MeasuredRun(
            JobExecutionResult result,
            double seconds,
            double cpuSeconds,
            double totalSeconds,
            double totalCpuSeconds) {
        this.result = result;
        this.seconds = seconds;
        this.cpuSeconds = cpuSeconds;
        this.totalSeconds = totalSeconds;
        this.totalCpuSeconds = totalCpuSeconds;
    }

    static MeasuredRun of(Configuration conf, JobGraph job, int slots) throws Exception {
        var os =
                (com.sun.management.OperatingSystemMXBean)
                        ManagementFactory.getOperatingSystemMXBean();
        long cpuStart = os.getProcessCpuTime();
        long wallStart = System.nanoTime();
        Configuration clusterConf = new Configuration(conf);
        clusterConf.set(RestOptions.BIND_PORT, "0");
        MiniCluster cluster =
                new MiniCluster(
                        new MiniClusterConfiguration.Builder()
                                .setConfiguration(clusterConf)
                                .setNumTaskManagers(1)
                                .setNumSlotsPerTaskManager(slots)
                                .setRpcServiceSharing(RpcServiceSharing.SHARED)
                                .build());
        JobExecutionResult result;
        double wall;
        double cpu;
        try {
            cluster.start();
            long cpu0 = os.getProcessCpuTime();
            long wall0 = System.nanoTime();
            result = cluster.executeJobBlocking(job);
            wall = (System.nanoTime() - wall0) / 1e9;
            cpu = (os.getProcessCpuTime() - cpu0) / 1e9;
        } finally {
            cluster.close();
        }
        return new MeasuredRun(
                result,
                wall,
                cpu,
                (System.nanoTime() - wallStart) / 1e9,
                (os.getProcessCpuTime() - cpuStart) / 1e9);
    }
}
