from dashboard.loadtest.cli import main

main()
