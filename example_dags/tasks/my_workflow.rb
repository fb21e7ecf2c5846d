# rb> tasks of the example project (unchanged Digdag code: Digdag.env).
class MyWorkflow
  def self.step2(total, message)
    puts "rb> step2: total=#{total} message=#{message} from #{Digdag.env.params['session_date']}"
    Digdag.env.store(doubled: total * 2, shout: message.upcase)
  end
end
