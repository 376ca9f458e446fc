"""The raw archive of every pass, and the offline tools that read it or files like it:
replay, import and pass reports."""
